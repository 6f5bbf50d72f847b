"""Lip-sync measures that need no rendering and no pretrained network (specs/metrics.md §7).

- mouth opening: per frame, the distance between the mean of an upper-lip and the mean of a
  lower-lip vertex set (a single vertex each for VOCASET/FLAME: upper 3546, lower 3504);
- its Pearson correlation with the ground-truth curve;
- the audio-visual offset: the lag (frames) of the best normalised cross-correlation between the
  predicted and true opening curves within +-max_lag frames; positive = the prediction is late;
- bilabial closure recall (SynthTalk): the fraction of bilabial segments of the true phoneme
  alignment during which the predicted opening falls below a closure threshold set relative to the
  speaker's true opening range;
- vowel opening rate, its complement: the fraction of vowel segments during which the predicted
  opening rises above that threshold. A static face whose mouth is closed at rest scores a perfect
  bilabial recall and a vowel opening rate of 0, so the two are reported together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from talkbench.errors import DataError
from talkbench.metrics.core import ArrayLike, as_vertices, check_indices

SEGMENT_CATEGORIES = (
    "bilabial", "labiodental", "vowel", "sibilant", "stop", "nasal", "liquid", "glide", "silence",
)
# VOCASET / FLAME mouth-opening vertices (CodeTalker #55, maintainer: "original 2151 is not correct")
FLAME_MOUTH_PAIR = (np.array([3546], dtype=np.int64), np.array([3504], dtype=np.int64))


def mouth_opening(vertices: ArrayLike, upper: ArrayLike, lower: ArrayLike) -> np.ndarray:
    """(T,) distance between the mean of the upper-lip and the mean of the lower-lip vertex set."""
    v = as_vertices(vertices, exact=False)  # gather the few lip vertices before going to float64
    up = check_indices(upper, v.shape[1], "upper_lip")
    lo = check_indices(lower, v.shape[1], "lower_lip")
    d = v[:, up].astype(np.float64).mean(axis=1) - v[:, lo].astype(np.float64).mean(axis=1)
    return np.sqrt(np.einsum("tc,tc->t", d, d))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two curves truncated to the common length.

    A constant curve (e.g. a static face) has no linear relation with anything: defined as 0.0
    rather than NaN, so a static prediction scores 0, not an undefined value.
    """
    n = min(len(a), len(b))
    if n < 2:
        raise DataError(f"a correlation needs at least 2 frames, got {n}")
    x = np.asarray(a[:n], dtype=np.float64) - np.mean(a[:n])
    y = np.asarray(b[:n], dtype=np.float64) - np.mean(b[:n])
    den = math.sqrt(float(x @ x) * float(y @ y))
    if den <= 1e-300:
        return 0.0
    return float(x @ y) / den


def av_offset(pred_open: np.ndarray, gt_open: np.ndarray, max_lag: int) -> int:
    """Lag k in [-max_lag, max_lag] maximising corr(pred[t + k], gt[t]) over the overlapping frames.

    Positive k: the predicted mouth moves k frames after the true one. Ties (e.g. constant curves)
    go to the smallest |k|, so a static prediction reports 0. Lags leaving fewer than 2 overlapping
    frames are not considered.
    """
    if max_lag < 0:
        raise DataError(f"max_lag must be >= 0, got {max_lag}")
    n = min(len(pred_open), len(gt_open))
    p, g = np.asarray(pred_open[:n], np.float64), np.asarray(gt_open[:n], np.float64)
    best_k, best_r = 0, -np.inf
    for k in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        if n - abs(k) < 2:
            continue
        r = pearson(p[k:], g[: n - k]) if k >= 0 else pearson(p[: n + k], g[-k:])
        if r > best_r + 1e-12:
            best_k, best_r = k, r
    return best_k


def segment_frames(start: float, end: float, fps: float, n_frames: int) -> tuple[int, int]:
    """Frame range [lo, hi) covering a segment in seconds; at least one frame (a short bilabial can
    fall between two frames), clipped to the sequence."""
    eps = 1e-6  # times written as frame / fps must map back to that frame despite rounding
    lo = int(math.floor(start * fps + eps))
    hi = max(lo + 1, int(math.ceil(end * fps - eps)))
    return max(0, min(lo, n_frames)), max(0, min(hi, n_frames))


def bilabial_closures(
    pred_open: np.ndarray,
    segments: Sequence[Mapping],
    fps: float,
    closed_below: float,
) -> tuple[int, int]:
    """(number of bilabial segments inside the sequence, number of them where the predicted opening
    reaches ``closed_below`` or less at some frame of the segment)."""
    n_seg = n_closed = 0
    for seg in segments:
        if seg["category"] != "bilabial":
            continue
        lo, hi = segment_frames(float(seg["start"]), float(seg["end"]), fps, len(pred_open))
        if hi <= lo:  # the segment lies beyond the (truncated) prediction
            continue
        n_seg += 1
        n_closed += bool(np.min(pred_open[lo:hi]) <= closed_below)
    return n_seg, n_closed


def vowel_openings(
    pred_open: np.ndarray,
    segments: Sequence[Mapping],
    fps: float,
    closed_below: float,
) -> tuple[int, int]:
    """(number of vowel segments inside the sequence, number of them where the predicted opening
    exceeds ``closed_below`` at some frame of the segment)."""
    n_seg = n_open = 0
    for seg in segments:
        if seg["category"] != "vowel":
            continue
        lo, hi = segment_frames(float(seg["start"]), float(seg["end"]), fps, len(pred_open))
        if hi <= lo:
            continue
        n_seg += 1
        n_open += bool(np.max(pred_open[lo:hi]) > closed_below)
    return n_seg, n_open


def closure_threshold(gt_min: float, gt_max: float, fraction: float) -> float:
    """Opening below which the mouth counts as closed: ``fraction`` of the speaker's true range above
    the speaker's smallest true opening."""
    return gt_min + fraction * (gt_max - gt_min)


def validate_segments(segments: object, where: str) -> list[dict]:
    """Check one clip's segment list against the SynthTalk alignment schema."""
    if not isinstance(segments, list):
        raise DataError(f"{where}: 'segments' must be a list, got {type(segments).__name__}")
    out = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, Mapping) or not {"category", "start", "end"} <= set(seg):
            raise DataError(f"{where}: segment {i} must have 'category', 'start' and 'end', got {seg!r}")
        if seg["category"] not in SEGMENT_CATEGORIES:
            raise DataError(
                f"{where}: segment {i} has unknown category {seg['category']!r}; "
                f"expected one of {', '.join(SEGMENT_CATEGORIES)}"
            )
        start, end = float(seg["start"]), float(seg["end"])
        if not (0 <= start <= end) or not math.isfinite(end):
            raise DataError(f"{where}: segment {i} has invalid times start={start}, end={end}")
        out.append({**seg, "start": start, "end": end})
    return out


def load_alignments(directory: str | Path) -> dict[str, list[dict]]:
    """Read ``alignments/<clip>.json`` files (SynthTalk schema) into {clip: segments}."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"alignment folder {directory} does not exist")
    out: dict[str, list[dict]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a readable JSON file ({exc})") from exc
        if not isinstance(doc, dict) or "segments" not in doc:
            raise DataError(f"{path}: expected an object with 'name' and 'segments'")
        out[str(doc.get("name", path.stem))] = validate_segments(doc["segments"], str(path))
    return out
