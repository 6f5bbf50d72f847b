"""SelfTalk's frozen recognizer and the CTC targets it gives (specs/selftalk.md, Losses).

The release runs a second copy of the speech checkpoint as ``Wav2Vec2ForCTC`` (every weight frozen,
still in train mode while the model trains, so its SpecAugment and dropout act as released) on the
raw 50 Hz frames: its last hidden state is the lip reader's feature target, its greedy transcript the
CTC target. On SynthTalk the recognizer is the pretrained SynthTalk encoder with its phoneme head (a
blank prepended as class 0), so the CTC branch has real targets where no ASR model exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from talkbench.audio.build import build_audio_encoder, encoder_class
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.synthtalk import load_checkpoint

BLANK = 0
HF_KINDS = ("wav2vec2", "hubert", "wavlm")
RANDOM_VOCABULARY = 33  # an untrained (tiny) mel recognizer: xlsr-53-english's vocabulary size


@dataclass(frozen=True)
class FeatureClock:
    """The recognizer's own rate: 50 Hz features kept as they are (interpolation to S' is exact)."""

    name: str
    fps: float = 50.0
    audio_alignment: str = "interpolate"
    frame_rule: str = "features"

    def frames_for_samples(self, n_samples: int) -> int:  # pragma: no cover - "features" never asks
        raise NotImplementedError


class Recognizer(nn.Module):
    """Frozen: audio (B, S), lengths (B,) -> hidden (B, T50, D), logits (B, T50, K), lengths (B,)."""

    def __init__(self, cfg: AudioEncoderConfig, dataset: str):
        super().__init__()
        clock = FeatureClock(name=f"{dataset}@50Hz")
        if cfg.kind in HF_KINDS:
            self.encoder = encoder_class(cfg.kind)(cfg, clock, ctc_head=True)
            self.head = self.encoder.ctc_head
            del self.encoder.ctc_head  # one owner for its weights (state-dict key head.*)
        else:
            self.encoder = build_audio_encoder(cfg, clock)
            if cfg.kind == "synthtalk" and cfg.pretrained:
                state = load_checkpoint(cfg.name_or_path)["head"]
                weight = torch.cat([torch.zeros_like(state["weight"][:1]), state["weight"]])
                bias = torch.cat([state["bias"].min()[None] - 10.0, state["bias"]])  # a blank that never wins
            else:
                weight = torch.zeros(RANDOM_VOCABULARY, self.encoder.out_dim)
                bias = torch.zeros(RANDOM_VOCABULARY)
                nn.init.normal_(weight, std=0.02)
            self.head = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(weight)
                self.head.bias.copy_(bias)
        self.out_dim = int(self.encoder.out_dim)
        self.vocabulary = int(self.head.out_features)
        self.requires_grad_(False)

    def forward(self, audio, audio_lengths):
        hidden, lengths = self.encoder(audio, audio_lengths)
        return hidden, self.head(hidden), lengths


def greedy_targets(
    logits: torch.Tensor, lengths: torch.Tensor, delimiter: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy CTC transcript of each element as token ids (blank = 0): arg-max, repeats merged, blanks
    dropped, the word delimiter stripped at both ends (what decoding to text and tokenising again
    does). Returns (targets (B, L) zero-padded, target lengths (B,))."""
    ids = logits.argmax(-1)
    out = []
    for b, n in enumerate(lengths.tolist()):
        seq = torch.unique_consecutive(ids[b, : int(n)])
        seq = seq[seq != BLANK]
        if delimiter is not None:
            keep = (seq != delimiter).nonzero()
            seq = seq[int(keep[0]) : int(keep[-1]) + 1] if len(keep) else seq[:0]
        out.append(seq)
    sizes = [len(s) for s in out]
    target_lengths = torch.tensor(sizes, device=logits.device)
    targets = torch.zeros(len(out), max(1, *sizes), dtype=torch.long, device=logits.device)
    for b, seq in enumerate(out):
        targets[b, : len(seq)] = seq
    return targets, target_lengths
