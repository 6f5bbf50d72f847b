"""The viewer's data: one clip's meshes per track as quantised offsets from the clip's template.

A track (the ground truth, a run's prediction, a study's left face) is stored as integers
``q = round((vertices - template) / step)``, one ``step`` per clip shared by all its tracks, so the
viewer gets the error between two tracks exactly from integer differences (``step * |q_a - q_b|``, within
``sqrt(3) * step`` of the metric layer's error on the unquantised meshes). The integers are delta-coded over
time (motion is smooth: frame-to-frame steps are small), laid out coordinate by coordinate, split into low
and high byte planes and deflated; the viewer inflates them with the browser's DecompressionStream.

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
MAX_LEVEL = 16_000  # |q| bound: frame-to-frame deltas (at most 2 * MAX_LEVEL) then fit int16
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


def quant_step(max_offset: float) -> float:
    """The power of ten that quantises offsets up to ``max_offset`` in 1,600 to 16,000 levels
    (1e-5 m = 0.01 mm for face motion of a few mm to 16 cm)."""
    if not math.isfinite(max_offset) or max_offset <= 0:
        return 1e-5
    return 10.0 ** math.ceil(math.log10(max_offset / MAX_LEVEL))


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
    """int16 levels (T, N) -> deflated byte planes of their time deltas, coordinate-major."""
    deltas = np.diff(q.astype(np.int32), axis=0, prepend=0).astype("<i2")  # |delta| <= 2 * MAX_LEVEL
    by_coordinate = np.ascontiguousarray(deltas.T).view(np.uint8).reshape(-1, 2)
    planes = np.concatenate([by_coordinate[:, 0], by_coordinate[:, 1]])  # low bytes, then high bytes
    return zlib.compress(planes.tobytes(), COMPRESSION)


def decode_levels(blob: bytes, n_frames: int, n_values: int) -> np.ndarray:
    """The inverse of :func:`encode_levels` (what viewer.js does): int16 levels (T, N)."""
    planes = np.frombuffer(zlib.decompress(blob), np.uint8)
    if planes.size != 2 * n_frames * n_values:
        raise DataError(f"track data holds {planes.size} bytes; expected {2 * n_frames * n_values}")
    low, high = planes.reshape(2, -1)
    deltas = (low.astype(np.uint16) | (high.astype(np.uint16) << 8)).view(np.int16)
    return np.cumsum(deltas.reshape(n_values, n_frames).astype(np.int32), axis=1).T.astype(np.int16)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
