"""Do the objective metrics agree with the raters? Per clip and method pair, the raters' preference
for method A against A's metric advantage on that clip; Spearman's rho with a bootstrap CI.

- preference: the share of (non-catch, kept) answers on a clip that chose A over B, per criterion;
- advantage: B's value minus A's on the clip (A's minus B's for higher-is-better metrics, |B| - |A|
  for metrics best at 0), so a positive rho means "the metric prefers whom the raters prefer";
- a clip's value: its per-sequence rows pooled as the metric's reduction pools sequences (frame
  sums over frame counts, or the mean), over the run's speaker conditions; speaker-pooled metrics
  (the style log errors) have no per-clip value and are left out;
- CI: 2000 percentile-bootstrap resamples of the (clip, pair) items (seeded).

A rating study (MOS / Likert) is correlated per (clip, method) item instead: the mean rating of a
method's clip against the metric's goodness there (minus the value for lower-is-better metrics, the
value for higher-is-better ones, minus |value| for those best at 0), so again a positive rho means
the metric agrees with the raters. The ground truth, rated as an anchor, has no metric row and drops out.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd

from talkbench.errors import TalkbenchError
from talkbench.metrics.registry import metric_info


def clip_preferences(kept: pd.DataFrame) -> pd.DataFrame:
    """criterion, clip, a, b (a < b by name), pref_a (share choosing a), n: from analysed answers
    (``winner``/``loser`` columns, catch trials and excluded raters already removed)."""
    df = kept.assign(a=np.minimum(kept["winner"], kept["loser"]), b=np.maximum(kept["winner"], kept["loser"]))
    df = df.assign(won_a=(df["winner"] == df["a"]).astype(float))
    grouped = df.groupby(["criterion", "clip", "a", "b"])["won_a"]
    return grouped.agg(pref_a="mean", n="size").reset_index()


def per_clip_values(per_sequence: pd.DataFrame, metric: str) -> pd.Series:
    """clip -> the metric over that clip's rows (its conditions), as the metric's reduction pools."""
    info = metric_info(metric)
    cols = list(info.columns)
    if any(c not in per_sequence for c in cols):
        return pd.Series(dtype=float)
    by_clip = per_sequence.groupby("clip")[cols].sum() if info.reduction != "sequence-mean" else None
    if info.reduction in ("frame-pooled", "segment-pooled"):
        return by_clip[cols[0]] / by_clip[cols[1]].where(by_clip[cols[1]] > 0)
    if info.reduction == "sequence-mean":
        return per_sequence.groupby("clip")[cols[0]].mean()
    raise TalkbenchError(f"metric {metric}: {info.reduction} has no per-clip value")


def spearman_ci(
    x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(rho, 95 % CI low, high) with items resampled; NaN where undefined (constant or < 3 items)."""
    from scipy.stats import rankdata, spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    rho = float(spearmanr(x, y).statistic)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    # Spearman = Pearson of the (average) ranks, row by row of the resamples
    rx, ry = rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    reps = (rx * ry).sum(axis=1) / np.where(den > 0, den, np.nan)
    reps = reps[np.isfinite(reps)]  # resamples with a constant side have no correlation
    if not len(reps):
        return rho, math.nan, math.nan
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return rho, float(lo), float(hi)


def metric_agreement(
    prefs: pd.DataFrame,
    values: dict[str, pd.DataFrame],
    metrics: list[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """criterion, metric, rho, ci_low, ci_high, n_items. ``values``: method label -> per-sequence table."""

    def advantage(part: pd.DataFrame, value_of, direction: str) -> np.ndarray:  # A's over B's
        return _goodness(value_of(part["a"]), direction) - _goodness(value_of(part["b"]), direction)

    return _agreement(prefs, "pref_a", advantage, values, metrics, n_boot, seed)


def clip_ratings(kept: pd.DataFrame) -> pd.DataFrame:
    """criterion, clip, method, rating (mean over kept raters), n: from analysed rating answers."""
    grouped = kept.groupby(["criterion", "clip", "method"])["rating"]
    return grouped.agg(rating="mean", n="size").reset_index()


def rating_agreement(
    ratings: pd.DataFrame,
    values: dict[str, pd.DataFrame],
    metrics: list[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """criterion, metric, rho, ci_low, ci_high, n_items between per-clip ratings and metric goodness."""

    def goodness(part: pd.DataFrame, value_of, direction: str) -> np.ndarray:
        return _goodness(value_of(part["method"]), direction)

    return _agreement(ratings, "rating", goodness, values, metrics, n_boot, seed)


_COLUMNS = ["criterion", "metric", "rho", "ci_low", "ci_high", "n_items"]


def _goodness(values: np.ndarray, direction: str) -> np.ndarray:
    """Larger is better, whatever the metric's direction (minus |value| for metrics best at 0)."""
    return {"higher": values, "zero": -np.abs(values)}.get(direction, -values)


def _agreement(items, target: str, score, values, metrics, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman (with its bootstrap CI) per criterion and metric between ``score(part, value_of,
    direction)``, the metric's side of each item, and the raters' ``target`` column."""
    rows = []
    for metric in metrics:
        info = metric_info(metric)
        if info.reduction == "speaker-pooled":
            continue
        clip_vals = {label: per_clip_values(df, metric) for label, df in values.items()}
        for criterion, part in items.groupby("criterion"):
            x = score(part, partial(_values, clip_vals, part["clip"]), info.direction)
            keep = np.isfinite(x)
            rho, lo, hi = spearman_ci(x[keep], part[target].to_numpy(float)[keep], n_boot, seed)
            rows.append(dict(zip(_COLUMNS, (criterion, metric, rho, lo, hi, int(keep.sum())))))
    return pd.DataFrame(rows, columns=_COLUMNS)


def _values(clip_vals: dict[str, pd.Series], clips, methods) -> np.ndarray:
    """Each item's metric value: method ``methods[i]`` on clip ``clips[i]`` (NaN where unscored)."""
    return np.asarray([_value(clip_vals, m, c) for m, c in zip(methods, clips)], float)


def _value(clip_vals: dict[str, pd.Series], method: str, clip: str) -> float:
    series = clip_vals.get(method)
    return float(series.get(clip, math.nan)) if series is not None else math.nan
