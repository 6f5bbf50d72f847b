"""The pretraining model of the SynthTalk speech encoder and its checkpoint files.

The encoder is the audio layer's ``mel`` encoder (log-mel -> conv stack at 50 Hz -> projection ->
transformer) with a frame-wise phoneme head for pretraining. Methods load the result through
talkbench.audio.synthtalk (``audio.kind: synthtalk``); this module writes what that one reads.
This module imports no tracking.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import torch
from torch import nn

from talkbench.audio import mel, signal
from talkbench.audio.config import AudioEncoderConfig
from talkbench.audio.mel import MelEncoder
from talkbench.audio.synthtalk import ARCH_FIELDS, CHECKPOINT, META
from talkbench.datasets.spec import DatasetSpec

from .data import FEATURE_RATE_HZ, PHONEMES

WEIGHT_MODULES = ("data.py", "config.py", "train.py")  # with PhonemeEncoder: all that shapes the weights


def code_digest() -> str:
    """Hash of the code that shapes the checkpoint: the data, settings and training modules, the
    pretraining model and the mel encoder's numerics (not the loading code of this module)."""
    h = hashlib.sha256()
    for name in WEIGHT_MODULES:
        h.update(name.encode())
        h.update((Path(__file__).parent / name).read_bytes())
    for obj in (PhonemeEncoder, MelEncoder, signal.log_mel, signal.mel_filterbank, signal.normalize_audio,
                signal.align_features, mel.time_mask_indices):
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:16]


def rate_spec() -> DatasetSpec:
    """A spec at the encoder's own 50 Hz: interpolation to the feature count is the identity."""
    return DatasetSpec(name="synthtalk-pretrain", fps=float(FEATURE_RATE_HZ), n_vertices=0, splits={},
                       train_subjects=())


class PhonemeEncoder(nn.Module):
    """Mel encoder + frame-wise phoneme classifier at 50 Hz (the pretraining model)."""

    def __init__(self, arch: AudioEncoderConfig, n_classes: int = len(PHONEMES)):
        super().__init__()
        self.encoder = MelEncoder(arch, rate_spec())
        self.head = nn.Linear(arch.d_model, n_classes)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.div(MelEncoder.frames_100hz(lengths) - 1, 2, rounding_mode="floor") + 1
        h, out_len = self.encoder(audio, lengths, frames)
        return self.head(h), out_len


def arch_dict(cfg: AudioEncoderConfig) -> dict:
    return {k: getattr(cfg, k) for k in ARCH_FIELDS}


def save_checkpoint(path: Path, model: PhonemeEncoder, arch: AudioEncoderConfig, meta: dict) -> None:
    torch.save({"arch": arch_dict(arch), "phonemes": list(PHONEMES),
                "encoder": model.encoder.state_dict(), "head": model.head.state_dict()}, path / CHECKPOINT)
    (path / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
