"""Does a ranking hold? Ranks per dataset with Kendall's tau between datasets, and the bootstrap
probability that each method ranks first over seeds and clips.

- :func:`rank_agreement`: methods x datasets of metric values -> their ranks (1 = best by the
  metric's direction, ties share the lower rank) and, for every pair of datasets, Kendall's tau-b
  (``scipy.stats.kendalltau``) over the methods both have;
- :func:`first_place_probability`: each method's {seed: StatBlock}; per bootstrap replicate the clips
  all methods scored are resampled jointly (the same clips for every method, as the paired tests do)
  and each method's seeds apart, each method's metric is taken under that draw, and the best method
  of the replicate counts one; the probabilities sum to 1.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from talkbench.errors import TalkbenchError
from talkbench.metrics.registry import metric_info
from talkbench.metrics.stats import (
    StatBlock,
    bootstrap_weights,
    common_clips,
    per_seed_values,
    restrict_clips,
    seed_draws,
)


def _badness(values: np.ndarray, direction: str) -> np.ndarray:
    """Smaller is better, whatever the direction."""
    return {"higher": -values, "zero": np.abs(values)}.get(direction, values)


def ranks(values: pd.Series, direction: str) -> pd.Series:
    """1 = best; ties share the lower rank; NaN stays NaN."""
    return pd.Series(_badness(values.to_numpy(float), direction), index=values.index).rank(method="min")


@dataclass(frozen=True)
class Agreement:
    a: str
    b: str
    tau: float  # Kendall's tau-b over the methods both datasets have (NaN for fewer than 2)
    p_value: float
    n_methods: int
    swapped: int  # pairs of methods ordered differently (ties in either dataset not counted)

    @property
    def verdict(self) -> str:
        if self.n_methods < 2 or not math.isfinite(self.tau):
            return "cannot tell (fewer than 2 shared methods)"
        if self.swapped == 0:
            return "holds"
        return "largely holds" if self.tau >= 0.6 else "does not hold"


def rank_agreement(values: pd.DataFrame, direction: str) -> tuple[pd.DataFrame, list[Agreement]]:
    """values: methods (index) x datasets (columns), NaN where a method did not run."""
    from scipy.stats import kendalltau

    table = pd.DataFrame({d: ranks(values[d], direction) for d in values.columns})
    pairs = []
    for a, b in itertools.combinations(values.columns, 2):
        both = table[[a, b]].dropna()
        n = len(both)
        if n >= 2:
            res = kendalltau(both[a], both[b])
            tau, p = float(res.statistic), float(res.pvalue)
        else:
            tau, p = math.nan, math.nan
        x, y = both[a].to_numpy(), both[b].to_numpy()
        swapped = sum(
            1 for i, j in itertools.combinations(range(n), 2) if (x[i] - x[j]) * (y[i] - y[j]) < 0
        )
        pairs.append(Agreement(a, b, tau, p, n, swapped))
    return table, pairs


def first_place_probability(
    metric: str, blocks: dict[str, dict[str, StatBlock]], n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """method -> the fraction of bootstrap replicates (clips jointly, seeds per method) it ranks first in."""
    info = metric_info(metric)
    methods = [m for m, b in blocks.items() if b]
    if len(methods) < 2:
        raise TalkbenchError(f"first-place probability on {metric}: needs 2 methods with per-sequence tables")
    clips = common_clips([b for m in methods for b in blocks[m].values()])
    if not clips:
        raise TalkbenchError(f"first-place probability on {metric}: the methods share no scored clip")
    w = bootstrap_weights(len(clips), n_boot, seed)
    rng = np.random.default_rng(seed + 1)
    values = []
    for m in methods:
        per_seed = per_seed_values(info, [restrict_clips(b, clips) for b in blocks[m].values()], w)  # (S, B)
        draws = seed_draws(per_seed.shape[0], n_boot, rng)  # (B, S)
        values.append(np.einsum("bs,sb->b", draws, per_seed))
    bad = _badness(np.asarray(values), info.direction)  # (M, B)
    bad = np.where(np.isfinite(bad), bad, np.inf)  # a replicate where a method has no value: not first
    winners = np.argmin(bad, axis=0)
    return {m: float(np.mean(winners == i)) for i, m in enumerate(methods)}


def first_place_verdict(probs: dict[str, float], level: float = 0.95) -> str:
    """In words: whose first place holds, or that none does."""
    order = sorted(probs.items(), key=lambda kv: -kv[1])
    top, p = order[0]
    if p >= level:
        return (
            f"**{top}** ranks first in {100 * p:.0f} % of resamples over seeds and clips: "
            "its first place holds."
        )
    shown = ", ".join(f"{m} {100 * q:.0f} %" for m, q in order[:3] if q > 0)
    return f"No method is reliably first (first-place probability {shown}; {100 * level:.0f} % needed)."
