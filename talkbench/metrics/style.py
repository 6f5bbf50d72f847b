"""Speaking-style measures: does a method reproduce *how much* a speaker moves, not just when.

Per test speaker s, pooled over the speaker's sequences (frames truncated to the common length):

- articulation gain g_s = RMS over frames and lip vertices of |pred - template| divided by the same
  RMS of the ground truth (1 = the speaker's true amplitude; < 1 = muted, > 1 = exaggerated);
- upper-face expressiveness ratio u_s: the same ratio on the upper-face vertices;
- their errors: mean over test speakers of |log g_s| and of |log u_s| (0 is perfect, symmetric
  in muting and exaggerating).

The per-sequence sufficient statistics (sums of squared displacement norms) are what the evaluator
stores, so pooling per speaker and bootstrapping over sequences never touch vertex arrays again.
"""

from __future__ import annotations

import numpy as np

from talkbench.metrics.core import ArrayLike, as_template, check_indices, truncate_pair


def displacement_energy(vertices: np.ndarray, template: np.ndarray, idx: np.ndarray) -> float:
    """Sum over frames and the given vertices of the squared norm of the displacement from template."""
    m = vertices[:, idx] - template[idx]
    return float(np.einsum("tvc,tvc->", m, m))


def style_sums(
    pred: ArrayLike, gt: ArrayLike, template: ArrayLike, lips: ArrayLike, upper: ArrayLike
) -> dict[str, float]:
    """Per-sequence sums: lip and upper-face displacement energy of prediction and ground truth."""
    p, g = truncate_pair(pred, gt)
    tpl = as_template(template, g.shape[1])
    li = check_indices(lips, g.shape[1], "lips")
    up = check_indices(upper, g.shape[1], "upper_face")
    return {
        "lip_sq_pred": displacement_energy(p, tpl, li),
        "lip_sq_gt": displacement_energy(g, tpl, li),
        "upper_sq_pred": displacement_energy(p, tpl, up),
        "upper_sq_gt": displacement_energy(g, tpl, up),
    }


def ratio(pred_sq: np.ndarray, gt_sq: np.ndarray) -> np.ndarray:
    """RMS ratio from pooled energies (the frame and vertex counts cancel); NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.asarray(pred_sq, np.float64) / np.asarray(gt_sq, np.float64))


RATIO_CLIP = (1e-3, 1e3)  # a static face (ratio 0) scores |log 1e-3| = 6.91, not infinity


def abs_log(ratios: np.ndarray) -> np.ndarray:
    """|log ratio| with the ratio clipped to RATIO_CLIP (NaN stays NaN: undefined ratio)."""
    return np.abs(np.log(np.clip(ratios, *RATIO_CLIP)))


def mean_abs_log(ratios: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over speakers (``axis``) of |log ratio| (clipped), ignoring speakers absent from a
    resample (NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        err = abs_log(ratios)
    present = ~np.isnan(err)
    total = np.where(present, err, 0.0).sum(axis=axis)
    count = present.sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
