"""The viewer's data: one clip's meshes per track as quantised offsets from the clip's template.

A track (the ground truth, a run's prediction, a study's left face) is stored as integers
``q = round((vertices - template) / step)``, one ``step`` per clip shared by all its tracks, so the
viewer gets the error between two tracks exactly from integer differences (``step * |q_a - q_b|``, within
``sqrt(3) * step`` of the metric layer's error on the unquantised meshes). The integers are delta-coded
over time (motion is smooth: frame-to-frame steps are small), then over vertices (neighbouring vertices,
which mesh orders mostly keep close in index, move alike), laid out coordinate by coordinate, split into
low and high byte planes and deflated; the viewer inflates them with the browser's DecompressionStream.

Each file is a script calling the page's loader (``TalkbenchViewer.track(clip, key, "<base64>")``), not a
binary: a page opened from disk (file://) may not fetch local files but may load local scripts.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from talkbench.errors import DataError

FORMAT = 1  # bumped when the layout below changes; the viewer refuses other versions
MAX_LEVEL = 8_000  # |q| bound: the double deltas (at most 4 * MAX_LEVEL) then fit int16
STEPS_PER_EXTENT = 20_000  # default step: 1/20,000 of the template's extent (0.01 mm on a 20 cm face)
COMPRESSION = 6  # zlib level: 9 is ~2x slower to write for ~1 % smaller files

# A rig turns a method's parameter output (e.g. blendshape weights, (T, K)) into vertices (T, V, 3).
Rig = Callable[[np.ndarray], np.ndarray]


@dataclass
class Track:
    """One animated mesh of a clip: ``key`` names its file, ``label`` is shown above its panel."""

    key: str
    label: str
    vertices: np.ndarray  # (T, V, 3)

    @classmethod
    def from_weights(cls, key: str, label: str, weights: np.ndarray, rig: Rig) -> Track:
        """A track from parameter outputs (blendshape weights, (T, K)) turned into meshes by ``rig``."""
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise DataError(f"track '{label}': expected weights of shape (T, K), got {weights.shape}")
        vertices = np.asarray(rig(weights))
        if vertices.ndim != 3 or vertices.shape[0] != weights.shape[0] or vertices.shape[2] != 3:
            raise DataError(
                f"track '{label}': the rig turned weights {weights.shape} into {vertices.shape}; "
                f"expected ({weights.shape[0]}, V, 3)"
            )
        return cls(key, label, vertices)


def quant_step(extent: float, max_offset: float) -> float:
    """The default step: the power of ten at or below ``extent / STEPS_PER_EXTENT`` (a face of 20 cm:
    1e-5 m, 0.01 mm; the same relative precision in any unit), made coarser by powers of ten until
    offsets up to ``max_offset`` fit MAX_LEVEL steps."""
    step = 10.0 ** math.floor(math.log10(extent / STEPS_PER_EXTENT)) if extent > 0 else 1e-5
    while max_offset / step > MAX_LEVEL:
        step *= 10
    return step


def quantise(offsets: np.ndarray, step: float, what: str = "track") -> np.ndarray:
    """(T, V, 3) offsets from the template -> int16 levels (T, V*3)."""
    q = np.rint(np.asarray(offsets, np.float64) / step)
    worst = float(np.abs(q).max(initial=0.0))
    if worst > MAX_LEVEL:
        raise DataError(
            f"{what}: offsets from the template reach {worst * step:.4g}, more than {MAX_LEVEL} steps of "
            f"{step:g}; pass a larger step"
        )
    return q.astype(np.int16).reshape(len(q), -1)


def encode_levels(q: np.ndarray) -> bytes:
    """int16 levels (T, N) -> deflated byte planes of their time-then-vertex deltas, coordinate-major."""
    t, n = q.shape
    deltas = np.diff(q.astype(np.int32).reshape(t, n // 3, 3), axis=0, prepend=0)  # over time
    deltas = np.diff(deltas, axis=1, prepend=0).reshape(t, n)  # over vertices, per coordinate
    by_coordinate = np.ascontiguousarray(deltas.T.astype("<i2")).view(np.uint8).reshape(-1, 2)
    planes = np.concatenate([by_coordinate[:, 0], by_coordinate[:, 1]])  # low bytes, then high bytes
    return zlib.compress(planes.tobytes(), COMPRESSION)


def decode_levels(blob: bytes, n_frames: int, n_values: int) -> np.ndarray:
    """The inverse of :func:`encode_levels` (what viewer.js does): int16 levels (T, N)."""
    planes = np.frombuffer(zlib.decompress(blob), np.uint8)
    if planes.size != 2 * n_frames * n_values:
        raise DataError(f"track data holds {planes.size} bytes; expected {2 * n_frames * n_values}")
    low, high = planes.reshape(2, -1)
    deltas = (low.astype(np.uint16) | (high.astype(np.uint16) << 8)).view(np.int16).astype(np.int32)
    deltas = deltas.reshape(n_values // 3, 3, n_frames)
    return np.cumsum(np.cumsum(deltas, axis=0), axis=2).reshape(n_values, n_frames).T.astype(np.int16)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
