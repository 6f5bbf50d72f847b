"""Honest statistics: bootstrap CIs over sequences with the reference pooling, and paired tests.

Everything works on per-sequence sufficient statistics (a few numbers per sequence), never on
vertex arrays: a bootstrap resample is a vector of multiplicities w (how often each sequence is
drawn), and every reduction is a ratio of w-weighted sums, so 1000 resamples are a few matrix
products. The same resampled sequences are used for every condition of a conditioned method and,
in a paired test, for both methods.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from talkbench.errors import TalkbenchError
from talkbench.metrics.registry import MetricInfo, metric_info
from talkbench.metrics.style import abs_log, mean_abs_log, ratio


@dataclass
class StatBlock:
    """Per-sequence columns arranged (C conditions, N clips); C = 1 for unconditioned predictions."""

    clips: list[str]
    subjects: list[str]
    conditions: list[str | None]
    columns: dict[str, np.ndarray]  # name -> (C, N) float64

    def speaker_onehot(self) -> np.ndarray:
        names = sorted(set(self.subjects))
        onehot = np.zeros((len(self.clips), len(names)))
        onehot[np.arange(len(self.clips)), [names.index(s) for s in self.subjects]] = 1.0
        return onehot


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) multiplicities of n sequences drawn with replacement, as float64."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def reduce(info: MetricInfo, block: StatBlock, w: np.ndarray) -> np.ndarray:
    """The metric under each weighting: w (B, N) -> (B, C). w = ones gives the point estimate."""
    cols = [block.columns[c] for c in info.columns]
    with np.errstate(divide="ignore", invalid="ignore"):
        if info.reduction in ("frame-pooled", "segment-pooled"):
            num, den = (np.einsum("bn,cn->bc", w, c) for c in cols)
            return np.where(den > 0, num / den, np.nan)
        if info.reduction == "sequence-mean":
            return np.einsum("bn,cn->bc", w, cols[0]) / w.sum(axis=1, keepdims=True)
        if info.reduction == "speaker-pooled":
            onehot = block.speaker_onehot()
            pred, true = (np.einsum("bn,cn,nk->bck", w, c, onehot) for c in cols)
            # a speaker with no sequence in a resample has 0/0 = NaN and is left out of the mean
            return mean_abs_log(ratio(pred, true), axis=-1)
    raise TalkbenchError(f"metric {info.name}: unknown reduction {info.reduction!r}")


def per_sequence_values(info: MetricInfo, block: StatBlock) -> np.ndarray:
    """(C, N) per-sequence values of a metric (the quantity a paired test compares)."""
    cols = [block.columns[c] for c in info.columns]
    with np.errstate(divide="ignore", invalid="ignore"):
        if info.reduction in ("frame-pooled", "segment-pooled"):
            return np.where(cols[1] > 0, cols[0] / cols[1], np.nan)
        if info.reduction == "sequence-mean":
            return cols[0].copy()
        return abs_log(ratio(cols[0], cols[1]))


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples, ignoring resamples where the metric is undefined."""
    s = np.asarray(samples, np.float64)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    # interpolating between infinite samples gives NaN: take order statistics then
    method = "linear" if np.isfinite(s).all() else "nearest"
    lo, hi = np.quantile(s, [a, 1.0 - a], method=method)
    return float(lo), float(hi)


def condition_mean(values: np.ndarray) -> np.ndarray:
    """(B, C) -> (B,): the mean over conditions (the talkbench rule for one-hot methods)."""
    return values.mean(axis=1)


@dataclass
class PairedTest:
    """Method A minus method B on the same clips: positive means A scores higher."""

    metric: str
    n_clips: int
    a: float
    b: float
    diff: float
    ci: tuple[float, float]
    p_value: float  # two-sided Wilcoxon signed-rank on per-clip values (mean over conditions)
    better: str  # "a" | "b" | "tie" by the metric's direction, point estimate only

    def __str__(self) -> str:
        return (
            f"{self.metric}: A={self.a:.6g} B={self.b:.6g} A-B={self.diff:.6g} "
            f"95% CI [{self.ci[0]:.6g}, {self.ci[1]:.6g}] Wilcoxon p={self.p_value:.4g} (n={self.n_clips})"
        )


def paired_test(a, b, metric: str, n_boot: int = 1000, seed: int = 0) -> PairedTest:
    """Compare two Evaluations on the clips both scored.

    The difference uses each method's own reference pooling (and its own condition grouping, so a
    one-hot method averaged over conditions can be compared with an audio-only one); its 95% CI is a
    paired bootstrap (the same resampled clips for both). The p-value is a two-sided Wilcoxon
    signed-rank test on per-clip values (per-sequence metric, averaged over conditions).
    """
    info = metric_info(metric)
    for label, ev in (("A", a), ("B", b)):
        missing = [c for c in info.columns if c not in ev.per_sequence.columns]
        if missing:
            raise TalkbenchError(
                f"paired test on {metric}: evaluation {label} has no {', '.join(missing)} column(s) "
                f"({getattr(ev, 'skipped', {}).get(metric, 'metric not computed')})"
            )
    common = sorted(set(a.per_sequence["clip"]) & set(b.per_sequence["clip"]))
    if len(common) < 2:
        raise TalkbenchError(
            f"paired test on {metric}: the two evaluations share {len(common)} clip(s); need at least 2"
        )
    block_a, block_b = a.block(common), b.block(common)
    ones = np.ones((1, len(common)))
    va = float(condition_mean(reduce(info, block_a, ones))[0])
    vb = float(condition_mean(reduce(info, block_b, ones))[0])
    w = bootstrap_weights(len(common), n_boot, seed)
    diffs = condition_mean(reduce(info, block_a, w)) - condition_mean(reduce(info, block_b, w))

    with warnings.catch_warnings():  # clips without any segment are NaN for segment metrics
        warnings.simplefilter("ignore", RuntimeWarning)
        xa = np.nanmean(per_sequence_values(info, block_a), axis=0)
        xb = np.nanmean(per_sequence_values(info, block_b), axis=0)
    d = xa - xb
    d = d[np.isfinite(d)]
    if d.size == 0 or np.all(d == 0):
        p = 1.0
    else:
        p = float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)

    diff = va - vb
    if info.direction == "zero":
        score = abs(vb) - abs(va)
    else:
        score = diff if info.direction == "higher" else -diff
    better = "tie" if score == 0 else ("a" if score > 0 else "b")
    return PairedTest(metric, len(common), va, vb, diff, percentile_ci(diffs), p, better)
