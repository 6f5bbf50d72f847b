"""Honest statistics: bootstrap CIs over sequences with the reference pooling, and paired tests.

Everything works on per-sequence sufficient statistics (a few numbers per sequence), never on
vertex arrays: a bootstrap resample is a vector of multiplicities w (how often each sequence is
drawn), and every reduction is a ratio of w-weighted sums, so 1000 resamples are a few matrix
products. The same resampled sequences are used for every condition of a conditioned method and,
in a paired test, for both methods.
"""

from __future__ import annotations

import math
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


# -- seeds x clips ------------------------------------------------------------------------------
# A method run with S seeds on the same N test clips gives a crossed design: a clip that is hard is
# hard for every seed. The interval below is a two-level bootstrap with two deliberate choices:
#
# - clips are resampled jointly: one multiset of clips per replicate, shared by every drawn seed
#   (and by both methods of a paired comparison). Resampling clips independently within each seed
#   would average the shared clip effect away and shrink the clip part of the variance by ~1/S.
# - seeds are resampled with their deviations from the mean inflated by sqrt(S/(S-1)) (a plain seed
#   bootstrap has variance (S-1)/S of the right one), and the interval is mean +- t * SE with the
#   bootstrap SE and Welch-Satterthwaite degrees of freedom from the seed part (S-1) and the clip
#   part (N-1). With 3 seeds a percentile interval covered about 75-80 % of simulated means (seed
#   noise dominating); this one covers about 95 % (tests/test_stats.py). Counting the seed-by-clip
#   noise in both parts makes it slightly conservative.
MIN_SEEDS = 2  # one seed says nothing about how a rerun varies
MIN_CLIPS = 8  # fewer clips give a bootstrap with a handful of distinct resamples


def support_reason(n_seeds: int, n_clips: int) -> str:
    """Why seeds x clips data cannot support an interval ('' when it can)."""
    if n_seeds < MIN_SEEDS:
        return "one seed" if n_seeds == 1 else "no seed"
    if n_clips < MIN_CLIPS:
        return f"{n_clips} clips (< {MIN_CLIPS})"
    return ""


@dataclass
class SeedClipEstimate:
    """A metric over seeds and clips: mean over seeds of each seed's value on the shared clips."""

    metric: str
    mean: float
    std: float  # over seeds, ddof 1; NaN for one seed
    n_seeds: int
    n_clips: int
    ci: tuple[float, float] | None  # None when the data cannot support one (see reason)
    reason: str = ""


@dataclass
class SeedClipComparison:
    """A minus B over seeds and clips (paired by clip, and by seed where both have the seed)."""

    metric: str
    a: float
    b: float
    diff: float
    n_seeds: tuple[int, int]
    n_clips: int
    paired_seeds: bool
    ci: tuple[float, float] | None
    p_value: float | None  # two-sided, from the same t(SE, df) as the CI, so the two never disagree
    reason: str = ""
    on_abs: bool = False  # metrics whose best is 0 (FDD): diff and CI are of |A| - |B|

    def favours(self, direction: str) -> str | None:
        """'a' or 'b' when the CI excludes 0 (a difference in favour of one), else None."""
        if self.ci is None:
            return None
        lo, hi = self.ci
        if self.on_abs or direction == "zero":  # closer to zero is better
            return "b" if lo > 0 else ("a" if hi < 0 else None)
        if lo > 0:
            return "a" if direction == "higher" else "b"
        if hi < 0:
            return "b" if direction == "higher" else "a"
        return None


def seed_draws(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, S) seed weights summing to 1 per replicate."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds


def per_seed_values(info: MetricInfo, blocks: list[StatBlock], w: np.ndarray) -> np.ndarray:
    """(S, B): each seed's metric (mean over conditions) under each clip weighting."""
    return np.stack([condition_mean(reduce(info, b, w)) for b in blocks])


def _inflated(values: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Seed-level values with their deviation from the seed mean inflated by sqrt(S/(S-1))."""
    s = values.shape[0]
    return point + (values - point) * np.sqrt(s / (s - 1))


def _satterthwaite(parts: list[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance components given as (variance, df)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / df for v, df in parts if df > 0)
    return math.inf if total <= 0 or denom <= 0 else total * total / denom


def _t_interval(point: float, reps: np.ndarray, df: float, level: float) -> tuple[tuple[float, float], float]:
    reps = reps[np.isfinite(reps)]
    se = float(reps.std(ddof=1)) if reps.size > 1 else math.nan
    q = float(sps.t.ppf(0.5 + level / 2.0, df)) if np.isfinite(df) else float(sps.norm.ppf(0.5 + level / 2))
    return (point - q * se, point + q * se), se


def common_clips(blocks: list[StatBlock]) -> list[str]:
    """The clips every block scored, in the first block's order."""
    common = set(blocks[0].clips)
    for b in blocks[1:]:
        common &= set(b.clips)
    return [c for c in blocks[0].clips if c in common]


def restrict_clips(block: StatBlock, clips: list[str]) -> StatBlock:
    """``block`` with only ``clips`` (in that order)."""
    if block.clips == clips:
        return block
    idx = [block.clips.index(c) for c in clips]
    return StatBlock(
        clips,
        [block.subjects[i] for i in idx],
        block.conditions,
        {k: v[:, idx] for k, v in block.columns.items()},
    )


def seed_clip_estimate(
    metric: str, blocks: list[StatBlock], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> SeedClipEstimate:
    """Mean, std over seeds and a 95 % CI over seeds and clips of one method (one block per seed)."""
    if not blocks:
        raise TalkbenchError(f"{metric}: no per-sequence table to estimate from")
    info = metric_info(metric)
    clips = common_clips(blocks)
    blocks = [restrict_clips(b, clips) for b in blocks]
    s, n = len(blocks), len(clips)
    per_seed = per_seed_values(info, blocks, np.ones((1, n)))[:, 0] if n else np.full(s, np.nan)
    mean = float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else math.nan
    std = float(np.nanstd(per_seed, ddof=1)) if s > 1 else math.nan
    reason = support_reason(s, n)
    if reason:
        return SeedClipEstimate(metric, mean, std, s, n, None, reason)
    rng = np.random.default_rng(seed)
    w = bootstrap_weights(n, n_boot, seed)
    v = per_seed_values(info, blocks, w)  # (S, B), the same clip multiset for every seed
    v = _inflated(per_seed[:, None], mean) + (v - per_seed[:, None])
    reps = np.einsum("bs,sb->b", seed_draws(s, n_boot, rng), v)
    df = _satterthwaite(
        [(float(np.var(per_seed, ddof=1)) / s, s - 1), (float(np.nanvar(v.mean(axis=0), ddof=1)), n - 1)]
    )
    ci, _ = _t_interval(mean, reps, df, level)
    return SeedClipEstimate(metric, mean, std, s, n, ci)


def seed_clip_comparison(
    metric: str,
    blocks_a: dict[str, StatBlock],
    blocks_b: dict[str, StatBlock],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> SeedClipComparison:
    """A minus B, each a {seed label: block}. Clips: those both score, resampled jointly for both.
    Seeds: when both have at least MIN_SEEDS seeds in common, those seeds are paired (the same draws
    for both, the difference taken per seed); otherwise each method's seeds are resampled apart.
    For a metric whose best value is 0 (direction "zero") the contrast is |A| - |B|."""
    info = metric_info(metric)
    if not blocks_a or not blocks_b:
        raise TalkbenchError(f"comparison on {metric}: a method has no per-sequence table")
    common_seeds = sorted(set(blocks_a) & set(blocks_b))
    paired = len(common_seeds) >= MIN_SEEDS
    if paired:
        blocks_a = {k: blocks_a[k] for k in common_seeds}
        blocks_b = {k: blocks_b[k] for k in common_seeds}
    la, lb_ = list(blocks_a.values()), list(blocks_b.values())
    clips = common_clips(la + lb_)
    la, lb_ = [restrict_clips(b, clips) for b in la], [restrict_clips(b, clips) for b in lb_]
    n, sa, sb = len(clips), len(la), len(lb_)
    ones = np.ones((1, n))
    pa = per_seed_values(info, la, ones)[:, 0] if n else np.full(sa, np.nan)
    pb = per_seed_values(info, lb_, ones)[:, 0] if n else np.full(sb, np.nan)
    a, b = float(np.nanmean(pa)), float(np.nanmean(pb))
    on_abs = info.direction == "zero"
    f = np.abs if on_abs else (lambda x: x)
    diff = float(f(a) - f(b))
    reason = support_reason(min(sa, sb), n)
    if reason:
        return SeedClipComparison(metric, a, b, diff, (sa, sb), n, paired, None, None, reason, on_abs)
    rng = np.random.default_rng(seed)
    w = bootstrap_weights(n, n_boot, seed)
    va, vb = per_seed_values(info, la, w), per_seed_values(info, lb_, w)
    clip_var = float(np.nanvar(f(va.mean(axis=0)) - f(vb.mean(axis=0)), ddof=1))
    # paired seeds: the same seed draws for both (the inflation is linear, so A - B is the inflated
    # per-seed difference); unpaired: independent draws
    draws_a = seed_draws(sa, n_boot, rng)
    draws_b = draws_a if paired else seed_draws(sb, n_boot, rng)
    ra = np.einsum("bs,sb->b", draws_a, _inflated(pa[:, None], a) + (va - pa[:, None]))
    rb = np.einsum("bs,sb->b", draws_b, _inflated(pb[:, None], b) + (vb - pb[:, None]))
    reps = f(ra) - f(rb)
    if paired:
        parts = [(float(np.var(f(pa) - f(pb), ddof=1)) / sa, sa - 1), (clip_var, n - 1)]
    else:
        parts = [
            (float(np.var(f(pa), ddof=1)) / sa, sa - 1),
            (float(np.var(f(pb), ddof=1)) / sb, sb - 1),
            (clip_var, n - 1),
        ]
    df = _satterthwaite(parts)
    ci, se = _t_interval(diff, reps, df, level)
    if se > 0 and np.isfinite(se):
        t = abs(diff) / se
        p = float(2 * (sps.t.sf(t, df) if np.isfinite(df) else sps.norm.sf(t)))
    else:
        p = 1.0 if diff == 0 else 0.0
    return SeedClipComparison(metric, a, b, diff, (sa, sb), n, paired, ci, p, "", on_abs)
