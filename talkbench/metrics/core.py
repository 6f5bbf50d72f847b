"""LVE, FDD and MVE exactly as the reference evaluation scripts compute them (specs/metrics.md §1-§3).

Every function takes NumPy arrays or torch tensors of shape (T, V, 3) with absolute vertex positions
at the dataset's motion rate. Prediction and ground truth are truncated to the shorter of the two
lengths (FaceDiffuser's rule; CodeTalker crashes when the prediction is shorter). Arithmetic is in
float64 so the results do not depend on the input precision. (The evaluator's batch path keeps the
full-mesh MVE differences in the input precision and accumulates in float64; see evaluate.py.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from talkbench.errors import DataError

ArrayLike = Any  # np.ndarray | torch.Tensor


def as_vertices(x: ArrayLike, what: str = "vertices", exact: bool = True) -> np.ndarray:
    """(T, V, 3) NumPy view of a NumPy array or torch tensor; (T, V*3) is reshaped. float64 when
    ``exact``, else float32/float64 inputs keep their dtype (no copy)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] % 3 == 0:
        a = a.reshape(a.shape[0], -1, 3)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"{what}: expected an array of shape (T, V, 3) or (T, V*3), got {a.shape}")
    if a.shape[0] == 0:
        raise DataError(f"{what}: has no frames (shape {a.shape})")
    if exact or a.dtype not in (np.float32, np.float64):
        return a.astype(np.float64, copy=False)
    return a


def check_finite(a: np.ndarray, what: str) -> None:
    """Raise on NaN or inf, naming the first bad frame: a NaN must never be averaged away."""
    finite = np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
    if not finite.all():
        t = int(np.argmin(finite))
        raise DataError(f"{what}: contains NaN or inf ({int((~finite).sum())} frames, first at frame {t})")


def check_indices(idx: ArrayLike, n_vertices: int, what: str) -> np.ndarray:
    """A region index set as int64, non-empty and inside [0, n_vertices)."""
    if hasattr(idx, "detach"):
        idx = idx.detach().cpu().numpy()
    a = np.asarray(idx)
    if a.size == 0:
        raise DataError(f"region '{what}' is empty; expected at least one vertex index")
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"region '{what}' must hold integer vertex indices, got dtype {a.dtype}")
    a = a.reshape(-1).astype(np.int64)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= n_vertices:
        raise DataError(
            f"region '{what}' has vertex indices in [{lo}, {hi}], outside [0, {n_vertices}) "
            f"for meshes with {n_vertices} vertices"
        )
    return a


def truncate_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/ground-truth pair and cut both to the common length."""
    p = as_vertices(pred, "prediction")
    g = as_vertices(gt, "ground truth")
    if p.shape[1] != g.shape[1]:
        raise DataError(
            f"prediction has {p.shape[1]} vertices but the ground truth has {g.shape[1]}; "
            "they must use the same mesh topology"
        )
    check_finite(p, "prediction")
    check_finite(g, "ground truth")
    t = min(p.shape[0], g.shape[0])
    return p[:t], g[:t]


def as_template(template: ArrayLike, n_vertices: int) -> np.ndarray:
    if hasattr(template, "detach"):
        template = template.detach().cpu().numpy()
    tpl = np.asarray(template, dtype=np.float64)
    if tpl.ndim == 1 and tpl.size == n_vertices * 3:
        tpl = tpl.reshape(n_vertices, 3)
    if tpl.shape != (n_vertices, 3):
        raise DataError(f"template: expected shape ({n_vertices}, 3), got {tpl.shape}")
    check_finite(tpl[None], "template")
    return tpl


# ---------------------------------------------------------------- per-frame terms (for pooling)


def lve_frames(pred: ArrayLike, gt: ArrayLike, lips: ArrayLike) -> np.ndarray:
    """Per frame: the max over lip vertices of the squared L2 error. Shape (T_common,)."""
    p, g = truncate_pair(pred, gt)
    idx = check_indices(lips, g.shape[1], "lips")
    d = g[:, idx] - p[:, idx]
    return np.einsum("tvc,tvc->tv", d, d).max(axis=1)


def vertex_errors(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """Per frame and vertex: the unsquared L2 error, the term MVE averages (and the viewer's heatmap
    shows). Shape (T_common, V)."""
    p, g = truncate_pair(pred, gt)
    d = g - p
    return np.sqrt(np.einsum("tvc,tvc->tv", d, d))


def mve_frames(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """Per frame: the mean over all vertices of the unsquared L2 error. Shape (T_common,)."""
    return vertex_errors(pred, gt).mean(axis=1)


def upper_face_dynamics(vertices: ArrayLike, template: ArrayLike, upper: ArrayLike) -> float:
    """D of one sequence: mean over upper-face vertices of the std over time (ddof=0) of the squared
    norm of the displacement from the template."""
    v = as_vertices(vertices)
    check_finite(v, "vertices")
    idx = check_indices(upper, v.shape[1], "upper_face")
    m = v[:, idx] - as_template(template, v.shape[1])[idx]
    a = np.einsum("tvc,tvc->tv", m, m)
    return float(a.std(axis=0).mean())


# ---------------------------------------------------------------- per-sequence metrics


def lve(pred: ArrayLike, gt: ArrayLike, lips: ArrayLike) -> float:
    """Lip vertex error of one sequence: mean over frames of the per-frame max over lip vertices of
    the squared L2 error (CodeTalker ``cal_metric.py``). A test set pools frames, not sequences: the
    evaluator divides the sum of ``lve_frames`` over all sequences by the total frame count.

    Equal to ``torchmetrics.functional.multimodal.lip_vertex_error(pred, gt, lips)`` (torchmetrics
    1.9), which also truncates to the common length and is also per sequence.
    """
    return float(lve_frames(pred, gt, lips).mean())


def fdd(pred: ArrayLike, gt: ArrayLike, template: ArrayLike, upper: ArrayLike) -> float:
    """Upper-face dynamics deviation of one sequence, signed: D(gt) - D(pred), with D from
    :func:`upper_face_dynamics` (the std over time of the *squared* displacement-from-template norm,
    averaged over upper-face vertices; CodeTalker ``cal_metric.py``). Positive = the prediction is
    too still. Both are truncated to the common length first. A test set reports the mean over
    sequences (sequence-weighted) and the mean of the absolute values.

    Difference from torchmetrics: torchmetrics 1.9 (installed) ships no FDD at all; the
    ``upper_face_dynamics_deviation`` of later torchmetrics versions is a different quantity, the
    std over time of the unsquared frame-to-frame displacement norm (no template, no squaring), so
    its values are not comparable with published FDD and it is not used here.
    """
    p, g = truncate_pair(pred, gt)
    return upper_face_dynamics(g, template, upper) - upper_face_dynamics(p, template, upper)


def mve(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean vertex error of one sequence: mean over frames and all vertices of the unsquared L2
    error (FaceDiffuser ``compute_objective_metrics.py``); a test set pools frames."""
    return float(mve_frames(pred, gt).mean())
