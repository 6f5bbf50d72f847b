"""Batch: padded tensors with lengths and masks, and the collate function that builds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from talkbench.datasets.clip import Clip


@dataclass
class Batch:
    """B clips padded to the longest. ``mask`` is True on valid frames.

    ``positive``/``negative`` are filled by the triplet sampler: for each anchor clip, another
    sentence of the same speaker and a clip of another speaker.
    """

    audio: torch.Tensor  # (B, S) float32, zero-padded
    audio_lengths: torch.Tensor  # (B,) long, samples
    vertices: torch.Tensor  # (B, T, V, 3) float32, zero-padded
    lengths: torch.Tensor  # (B,) long, frames
    mask: torch.Tensor  # (B, T) bool, True = valid frame
    template: torch.Tensor  # (B, V, 3)
    speaker: torch.Tensor  # (B,) long, training-speaker index or -1
    weights: torch.Tensor | None = None  # (B, T, K) blendshape weights, zero-padded (blendshape datasets)
    names: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    dataset: str | None = None  # the mixture member it is from (datasets/mixture.py); None: one dataset
    positive: Batch | None = None
    negative: Batch | None = None

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            elif isinstance(value, Batch):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return Batch(**moved)

    def pin_memory(self) -> Batch:
        pinned = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor | Batch):
                value = value.pin_memory()
            pinned[f.name] = value
        return Batch(**pinned)


def collate(clips: Sequence[Clip], speaker_index=None) -> Batch:
    """Pad clips into a Batch. ``speaker_index(subject) -> int`` maps subjects to one-hot indices."""
    if not clips:
        raise ValueError("collate() needs at least one clip")
    n = len(clips)
    max_s = max(len(c.audio) for c in clips)
    max_t = max(c.n_frames for c in clips)
    v = clips[0].vertices.shape[1]
    audio = np.zeros((n, max_s), np.float32)
    verts = np.zeros((n, max_t, v, 3), np.float32)
    templ = np.empty((n, v, 3), np.float32)
    for i, c in enumerate(clips):
        audio[i, : len(c.audio)] = c.audio
        verts[i, : c.n_frames] = c.vertices
        templ[i] = c.template
    lengths = torch.tensor([c.n_frames for c in clips], dtype=torch.long)
    weights = None
    if all(c.weights is not None for c in clips):
        w = np.zeros((n, max_t, clips[0].weights.shape[1]), np.float32)
        for i, c in enumerate(clips):
            w[i, : c.n_frames] = c.weights
        weights = torch.from_numpy(w)
    return Batch(
        audio=torch.from_numpy(audio),
        audio_lengths=torch.tensor([len(c.audio) for c in clips], dtype=torch.long),
        vertices=torch.from_numpy(verts),
        lengths=lengths,
        mask=torch.arange(max_t)[None, :] < lengths[:, None],
        template=torch.from_numpy(templ),
        speaker=torch.tensor([speaker_index(c.subject) if speaker_index else -1 for c in clips]),
        weights=weights,
        names=[c.name for c in clips],
        subjects=[c.subject for c in clips],
    )
