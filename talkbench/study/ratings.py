"""Analysis of rating (MOS / Likert) answers: attention checks, then the mean opinion score per method
and criterion with a 95 % CI from a two-way bootstrap over raters and clips.

Why both: a MOS varies with who rated and with what was rated, so resampling only the answers (as if
they were independent) gives intervals far too narrow; resampling raters and clips together, each
with replacement, keeps every rater's and every clip's answers together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from talkbench.errors import TalkbenchError

RATING_COLUMNS = ("rater", "trial", "criterion", "choice", "method", "clip", "check", "expected")


def attention_failures(answers: pd.DataFrame, max_repeat_diff: float = 1.0) -> dict[str, str]:
    """rater -> why excluded: a wrong instructed response, or repeated trials rated more than
    ``max_repeat_diff`` points apart on average (per criterion, against the first showing)."""
    check = answers["check"].fillna("")
    answers = answers.assign(rating=pd.to_numeric(answers["choice"], errors="coerce"))
    failed: dict[str, str] = {}
    instructed = answers[check == "instructed"]
    for rater in sorted(set(instructed.loc[instructed["choice"] != instructed["expected"], "rater"])):
        failed[rater] = "instructed response"
    repeats = answers[check == "repeat"]
    if not repeats.empty:
        first = answers[check == ""].set_index(["rater", "trial", "criterion"])["rating"]
        keys = list(zip(repeats["rater"], repeats["repeat_of"], repeats["criterion"]))
        before = first.reindex(keys).to_numpy()
        diff = pd.Series(np.abs(repeats["rating"].to_numpy() - before), index=repeats["rater"].to_numpy())
        for rater, d in diff.dropna().groupby(level=0).mean().items():
            if d > max_repeat_diff and rater not in failed:
                failed[rater] = f"inconsistent repeats ({d:.1f} points apart)"
    return failed


def bootstrap_mos(ratings: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(MOS, 95 % CI low, high) of one method and criterion; ``ratings`` has rater, clip, rating.

    Each resample draws raters and clips with replacement and averages the answers in the drawn
    (rater, clip) cells, weighted by how often each was drawn (a cell nobody answered weighs 0)."""
    cells = ratings.pivot_table(index="rater", columns="clip", values="rating", aggfunc="mean")
    x = cells.to_numpy(float)
    seen = np.isfinite(x)
    x0 = np.where(seen, x, 0.0)
    rng = np.random.default_rng(seed)
    n_r, n_c = x.shape
    wr = np.apply_along_axis(np.bincount, 1, rng.integers(0, n_r, (n_boot, n_r)), minlength=n_r)
    wc = np.apply_along_axis(np.bincount, 1, rng.integers(0, n_c, (n_boot, n_c)), minlength=n_c)
    num = np.einsum("br,rc,bc->b", wr, x0, wc)
    den = np.einsum("br,rc,bc->b", wr, seen.astype(float), wc)
    reps = num[den > 0] / den[den > 0]
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(ratings["rating"].mean()), float(lo), float(hi)


def analyze_ratings(
    answers: pd.DataFrame, max_repeat_diff: float = 1.0, n_boot: int = 2000, seed: int = 0
) -> dict:
    """MOS per method and criterion with bootstrap CIs, after excluding raters failing an attention check."""
    missing = set(RATING_COLUMNS) - set(answers.columns)
    if missing:
        raise TalkbenchError(
            f"rating answers lack columns {sorted(missing)}; expected {list(RATING_COLUMNS)}"
        )
    answers = answers.assign(
        rating=pd.to_numeric(answers["choice"], errors="coerce"), check=answers["check"].fillna("")
    )
    excluded = attention_failures(answers, max_repeat_diff)
    kept = answers[~answers["rater"].isin(list(excluded)) & (answers["check"] == "")]
    if kept.empty:
        raise TalkbenchError("no ratings left to analyse (all raters excluded or only attention checks)")
    rows = []
    for (method, criterion), part in kept.groupby(["method", "criterion"], sort=True):
        mos, lo, hi = bootstrap_mos(part, n_boot, seed)
        rows.append(
            {
                "method": method,
                "criterion": criterion,
                "mos": mos,
                "ci_low": lo,
                "ci_high": hi,
                "n": len(part),
                "raters": part["rater"].nunique(),
                "clips": part["clip"].nunique(),
            }
        )
    return {
        "mos": pd.DataFrame(rows),
        "excluded_raters": sorted(excluded),
        "exclusion_reasons": excluded,
        "n_raters": int(answers["rater"].nunique()),
        "n_answers": int(len(kept)),
        "kept": kept,  # the analysed ratings (study/correlation.py reads them per clip)
    }


def plot_mos(mos: pd.DataFrame, path) -> None:
    """MOS per method with its bootstrap 95 % CI, one panel per criterion."""
    from talkbench.study.analysis import plot_intervals

    height = 0.5 * mos["method"].nunique() + 2
    plot_intervals(mos.assign(label=mos["method"]), "mos", "mean opinion score", height, path)
