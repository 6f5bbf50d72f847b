"""MEE, CE and Diversity of N samples of one clip (specs/stochastic-metrics.md §1.1), per sequence.

ProbTalk3D's ``evaluation.py`` defines them; the benchmark study reuses it. Per clip with ground truth
G and samples P^0..P^{N-1} (each truncated to the common length, as LVE is):

- MEE: the per-frame lip error e_t (max over lip vertices of the squared L2) of the vertex-wise mean
  of the N samples; frames pooled over clips like LVE (u^2);
- CE: e_t of the best sample, the one with the smallest summed e_t (an oracle best-of-N, so it is
  reported with N in its name and is never above the LVE of sample 0); frames pooled (u^2);
- Diversity (``diversity_pt3d``): the N samples shuffled by a seeded generator, paired i with i + N/2,
  the mean over frames and all vertices of the unsquared L2 between the pair, averaged over the
  N/2 pairs (ProbTalk3D: N = 10, 5 pairs); ``diversity``: the same over all N(N-1)/2 pairs; clips
  averaged (u).

A deterministic method is scored with N = 1: MEE = CE = LVE and both diversities 0 (never N copies).
Arithmetic in float64, as in :mod:`talkbench.metrics.core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from talkbench.errors import DataError
from talkbench.metrics.core import ArrayLike, lve_frames, truncate_pair


@dataclass(frozen=True)
class SampleScores:
    """One clip's columns for the frame-pooled and sequence-mean reductions."""

    lve_sum: float  # sample 0, as the deterministic LVE
    mee_sum: float
    ce_sum: float
    n_frames: int
    div_pt3d: float
    div_all: float
    n_samples: int
    ce_index: int  # which sample CE chose

    def row(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _as_array(samples: ArrayLike) -> np.ndarray:
    if hasattr(samples, "detach"):
        samples = samples.detach().cpu().numpy()
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 4 or s.shape[0] < 1 or s.shape[-1] != 3:
        raise DataError(f"samples: expected (N, T, V, 3) with N >= 1, got shape {s.shape}")
    return s


def _samples(samples: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Samples and ground truth checked and truncated to their common length."""
    pairs = [truncate_pair(p, gt) for p in _as_array(samples)]
    return np.stack([p for p, _ in pairs]), pairs[0][1]


def lip_errors(samples: ArrayLike, gt: ArrayLike, lips: ArrayLike) -> np.ndarray:
    """e_t of every sample: (N, T_common)."""
    s, g = _samples(samples, gt)
    return np.stack([lve_frames(p, g, lips) for p in s])


def mee_frames(samples: ArrayLike, gt: ArrayLike, lips: ArrayLike) -> np.ndarray:
    """e_t of the vertex-wise mean of the samples (T_common,)."""
    s, g = _samples(samples, gt)
    return lve_frames(s.mean(axis=0), g, lips)


def ce_frames(samples: ArrayLike, gt: ArrayLike, lips: ArrayLike) -> tuple[np.ndarray, int]:
    """(e_t of the sample with the smallest summed e_t, its index); ties go to the first."""
    errors = lip_errors(samples, gt, lips)
    best = int(np.argmin(errors.sum(axis=1)))
    return errors[best], best


def _pair_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(np.sqrt(np.einsum("tvc,tvc->tv", d, d)).mean())


def diversity_pt3d(samples: ArrayLike, seed: int) -> float:
    """ProbTalk3D's Diversity: shuffle (seeded here), pair i with i + N/2, mean over the N/2 pairs.
    N must be even (ProbTalk3D's script requires 10); N = 1 is a deterministic method: 0."""
    s = _as_array(samples)
    n = s.shape[0]
    if n == 1:
        return 0.0
    if n % 2:
        raise DataError(f"diversity_pt3d pairs the samples in halves: N must be even (10 published), got {n}")
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return float(np.mean([_pair_distance(s[order[i]], s[order[i + half]]) for i in range(half)]))


def diversity_all_pairs(samples: ArrayLike) -> float:
    """The same distance averaged over all N(N-1)/2 pairs (the low-variance talkbench variant)."""
    s = _as_array(samples)
    if s.shape[0] == 1:
        return 0.0
    return float(np.mean([_pair_distance(s[i], s[j]) for i, j in combinations(range(s.shape[0]), 2)]))


def score_samples(samples: ArrayLike, gt: ArrayLike, lips: ArrayLike, pair_seed: int) -> SampleScores:
    """Every stochastic column of one clip; ``pair_seed`` seeds the ProbTalk3D pairing (derive it
    per clip, e.g. with ``talkbench.methods.base.sample_seed``, so it does not depend on clip order)."""
    s, g = _samples(samples, gt)
    errors = np.stack([lve_frames(p, g, lips) for p in s])
    best = int(np.argmin(errors.sum(axis=1)))  # ce_frames' rule, on errors computed once
    return SampleScores(
        lve_sum=float(errors[0].sum()),
        mee_sum=float(lve_frames(s.mean(axis=0), g, lips).sum()),
        ce_sum=float(errors[best].sum()),
        n_frames=int(errors.shape[1]),
        # undefined for an odd N > 1 (the evaluator then skips diversity_pt3d)
        div_pt3d=diversity_pt3d(s, pair_seed) if s.shape[0] % 2 == 0 or s.shape[0] == 1 else float("nan"),
        div_all=diversity_all_pairs(s),
        n_samples=int(s.shape[0]),
        ce_index=best,
    )


def lip_spread(samples: ArrayLike, lips: ArrayLike) -> np.ndarray:
    """Per frame, how far the samples spread on the lips: the mean over lip vertices of the root of
    the summed per-coordinate variance over the N samples (ddof 0), (T,) in u; 0 for N = 1.
    The curve behind the report's diversity plot."""
    s = _as_array(samples)[:, :, np.asarray(lips, dtype=np.int64)]
    return np.sqrt(s.var(axis=0).sum(axis=-1)).mean(axis=1)
