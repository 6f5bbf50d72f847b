"""Clip: one (subject, sentence) recording with its audio, motion and neutral template."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkbench.audio.signal import SAMPLE_RATE  # noqa: F401 (the dataset layer's rate is the speech layer's)


@dataclass(frozen=True)
class Clip:
    """One clip. ``vertices`` may be a read-only memory-mapped view; ``audio`` is float32 mono at 16 kHz.

    Audio and motion are length-aligned by the loader: ``len(audio) == round(T / fps * 16000)``.
    A blendshape dataset gives ``weights`` of the same T frames beside the vertices.
    """

    name: str
    subject: str
    sentence: int
    fps: float
    audio: np.ndarray  # (S,) float32, 16 kHz
    vertices: np.ndarray  # (T, V, 3) float32, absolute positions
    template: np.ndarray  # (V, 3) float32
    weights: np.ndarray | None = None  # (T, K) float32 blendshape weights, for a blendshape dataset

    @property
    def n_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps
