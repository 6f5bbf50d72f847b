"""Timing-tolerant lip metrics: how much of the lip error is a few frames of timing offset.

Dynamic time warping (tslearn's ``dtw_path_from_metric`` on a precomputed cost; BSD-licensed, where
dtw-python is GPL and dtaidistance takes no custom cost) aligns prediction and ground truth within a
Sakoe-Chiba band of ``window`` frames, on exactly the per-pair cost the metric reports, so a pure time
shift within the window costs nothing and a window of 0 (the diagonal path) gives the plain metric:

- ``lve_dtw``: the per-pair cost is LVE's term, the max over lip vertices of the squared L2 error
  between predicted frame i and true frame j;
- ``lip_open_dtw``: the per-pair cost is |opening_pred(i) - opening_true(j)| of the mouth-opening
  curves, next to ``lip_open_err``, the same distance without warping (frame i against frame i).

The path minimises the summed cost (steps (1,0), (0,1), (1,1), each counted once) from the
first to the last common frame; a sequence's value is the mean cost over the path's steps, and its
sufficient statistic is that mean times the common frame count, so test sets pool frames as LVE does.
"""

from __future__ import annotations

import numpy as np

from talkbench.errors import DataError

DTW_WINDOW_S = 0.1  # lve_dtw v1 / lip_open_dtw v1: the band is round(0.1 s x fps) frames (3 at 30 fps)


def dtw_window(fps: float) -> int:
    """The Sakoe-Chiba band of the v1 DTW metrics at a dataset's frame rate, in frames (at least 1)."""
    return max(1, int(round(DTW_WINDOW_S * fps)))


def banded_cost(pair_cost, n: int, window: int) -> np.ndarray:
    """(n, n) cost matrix with ``pair_cost(i, j)`` (vectorised over index arrays) inside the band
    |i - j| <= window and inf outside; only the band is computed (n x (2 window + 1) pairs)."""
    cost = np.full((n, n), np.inf)
    for k in range(-window, window + 1):
        i = np.arange(max(0, -k), min(n, n - k))
        if len(i):
            cost[i, i + k] = pair_cost(i, i + k)
    return cost


def path_mean(cost: np.ndarray, window: int) -> float:
    """The mean cost over the steps of the minimum-cost warping path within the band."""
    if window < 0:
        raise DataError(f"DTW window must be >= 0 frames, got {window}")
    n = cost.shape[0]
    if n == 1 or window == 0:
        return float(np.mean(np.diag(cost)))
    from tslearn.metrics import dtw_path_from_metric  # slow to import (numba): only when needed

    path, _ = dtw_path_from_metric(cost, metric="precomputed", sakoe_chiba_radius=min(window, n - 1))
    i, j = np.asarray(path).T
    return float(cost[i, j].mean())


def lve_dtw(pred_lips: np.ndarray, gt_lips: np.ndarray, window: int) -> float:
    """LVE after DTW of one sequence: pred_lips, gt_lips (T, L, 3) lip vertices (truncated to the
    common length)."""
    n = min(len(pred_lips), len(gt_lips))
    p, g = np.asarray(pred_lips[:n], np.float64), np.asarray(gt_lips[:n], np.float64)

    def cost(i, j):
        d = g[j] - p[i]
        return np.einsum("tvc,tvc->tv", d, d).max(axis=1)

    return path_mean(banded_cost(cost, n, window), window)


def lip_open_dtw(pred_open: np.ndarray, gt_open: np.ndarray, window: int) -> float:
    """Mean |opening difference| along the DTW path of two mouth-opening curves (T,)."""
    n = min(len(pred_open), len(gt_open))
    p, g = np.asarray(pred_open[:n], np.float64), np.asarray(gt_open[:n], np.float64)
    return path_mean(banded_cost(lambda i, j: np.abs(g[j] - p[i]), n, window), window)
