"""The contract every speech encoder keeps (FaceFormer spec §2, MemoryTalker spec §2.1, CodeTalker §2.1):

    feats, feat_lengths = encoder(audio (B, S), audio_lengths (B,), n_frames (B,) | None)

1. each utterance is normalised over its valid samples (zero mean, unit variance, as
   Wav2Vec2Processor does);
2. a CNN front end gives 50 Hz features (the frozen wav2vec2/HuBERT/WavLM feature encoder, or log-mel
   at 100 Hz followed by a stride-2 conv stack);
3. the features are aligned to the motion rate BEFORE the feature projection:
   ``interpolate``: linear interpolation (align_corners=True) to ``n_frames`` per element, or when
   ``n_frames`` is None to the dataset's frame rule (``frames_for_samples``: the released
   ``int(S'/50*fps)`` for VOCASET, the generator's count for SynthTalk); ``pairs``: 50 Hz kept, two
   audio frames per motion frame (trimmed to an even length, cropped to ``2 * n_frames``);
4. feature projection, SpecAugment time masking (training only), transformer with padded frames
   masked out.

``feat_lengths`` is the number of valid output frames per element (motion frames for
``interpolate``, twice the motion frames for ``pairs``). Padding never changes a valid output:
front ends run on each element's valid samples, alignment works per element, transformers get
key-padding masks. The encoder needs of the dataset only its clock (:class:`MotionClock`, which a
``DatasetSpec`` is), so this layer imports no dataset code.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import torch
from torch import nn

from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.signal import FEATURE_RATE, too_short
from talkbench.errors import DataError


class MotionClock(Protocol):
    """The motion rate an encoder aligns to: what it reads of a dataset spec."""

    name: str
    fps: float
    audio_alignment: str  # interpolate | pairs
    frame_rule: str  # features | samples

    def frames_for_samples(self, n_samples: int) -> int: ...


class AudioEncoder(nn.Module):
    """Base class: subclasses set ``out_dim`` and implement ``forward`` with the module contract."""

    out_dim: int
    output_layer: str = "last"  # which layer's features forward returns

    def __init__(self, cfg: AudioEncoderConfig, spec: MotionClock):
        super().__init__()
        self.cfg = cfg
        self.fps = float(spec.fps)
        self.alignment = spec.audio_alignment
        self.spec = spec

    def forward(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def trainable_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes (relative to this module) that train; the frozen CNN is left out."""
        return ("",)

    def frozen_parameters(self) -> list[str]:
        """Names of the parameters that never train (the complement of :meth:`trainable_prefixes`)."""
        keep = self.trainable_prefixes()
        return [n for n, _ in self.named_parameters() if not any(n.startswith(p) for p in keep)]

    def declaration(self) -> dict:
        """What this encoder is: its frozen parameters, the layer it returns, and at what rates."""
        late = getattr(self.cfg, "interpolate_at", "features") == "output"  # always at the motion rate
        rate = self.fps * (2 if self.alignment == "pairs" and not late else 1)
        return {"kind": self.cfg.kind, "frozen": self.frozen_parameters(), "layer": self.output_layer,
                "feature_rate_hz": FEATURE_RATE, "output_rate_hz": rate, "out_dim": self.out_dim}

    def inference_precision(self, audio: torch.Tensor):
        """bf16 autocast for inference on CUDA (``cuda_bf16_inference``), else nothing."""
        wanted = getattr(self.cfg, "cuda_bf16_inference", True)  # configs pickled before the option
        if wanted and audio.is_cuda and not torch.is_grad_enabled() and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def default_frames(
        self, audio_lengths: torch.Tensor, n_frames: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``n_frames`` when given; else the dataset's count where it is not the feature rule.

        Under ``frame_rule == "features"`` (VOCASET, BIWI) None stays None and the frame count comes
        from this CNN's 50 Hz length S' as in the released code; under ``"samples"`` (SynthTalk) it is
        the generator's count from the sample count, so predictions have the ground truth's length.
        """
        spec = getattr(self, "spec", None)  # encoders pickled before the frame rule existed
        if n_frames is not None or spec is None or spec.frame_rule == "features":
            return n_frames
        frames = [spec.frames_for_samples(int(n)) for n in audio_lengths.tolist()]
        return torch.tensor(frames, device=audio_lengths.device)

    def _check_lengths(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> None:
        if audio.dim() != 2 or audio_lengths.shape != (audio.shape[0],):
            raise DataError(
                f"audio encoder expects audio (B, S) and audio_lengths (B,), got {tuple(audio.shape)} "
                f"and {tuple(audio_lengths.shape)}"
            )
        for n in audio_lengths.tolist():
            if n < 400:  # one CNN receptive field (25 ms)
                raise too_short(int(n), self.fps)
