"""Analysis of 2AFC answers: preference rates, exact binomial tests, Wilson CIs, Holm, Bradley-Terry."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from talkbench.errors import TalkbenchError

ANSWER_COLUMNS = ("rater", "trial", "criterion", "choice", "left", "right", "catch", "expected")


@dataclass
class PairResult:
    method_a: str
    method_b: str
    criterion: str
    wins_a: int
    n: int
    rate: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float = float("nan")


def binomial_summary(wins: int, n: int) -> tuple[float, float, float, float]:
    """Preference rate, exact two-sided binomial p against 0.5, and the Wilson 95% interval."""
    if n <= 0:
        raise TalkbenchError("a comparison with no answers cannot be tested")
    test = binomtest(wins, n, 0.5)
    ci = test.proportion_ci(confidence_level=0.95, method="wilson")
    return wins / n, float(test.pvalue), float(ci.low), float(ci.high)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p_values[idx])
        adjusted[idx] = min(1.0, running)
    return adjusted.tolist()


def bradley_terry(wins: np.ndarray, iterations: int = 1000, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths by Hunter's MM algorithm; wins[i, j] = times i beat j.

    Returned as log-strengths centred on zero (comparable across studies). Every method needs at
    least one win and one loss for finite scores; a tiny prior of half a win each way keeps them finite.
    """
    w = wins.astype(float) + 0.5 * (1 - np.eye(len(wins)))
    games = w + w.T
    p = np.ones(len(w))
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = w.sum(axis=1) / denom
        new /= np.exp(np.log(new).mean())
        if np.abs(new - p).max() < tol:
            p = new
            break
        p = new
    return np.log(p)


def catch_failures(answers: pd.DataFrame, min_correct: float = 0.75) -> set[str]:
    """Raters whose share of correct catch-trial answers is below ``min_correct``."""
    catch = answers[answers["catch"].astype(bool)]
    if catch.empty:
        return set()
    correct = (catch["choice"] == catch["expected"]).groupby(catch["rater"]).mean()
    return set(correct[correct < min_correct].index)


def analyze(answers: pd.DataFrame, min_catch_correct: float = 0.75) -> dict:
    """Per method pair and criterion: preference of the first method, tests, Holm; BT for >= 3 methods."""
    missing = set(ANSWER_COLUMNS) - set(answers.columns)
    if missing:
        raise TalkbenchError(f"answers lack columns {sorted(missing)}; expected {list(ANSWER_COLUMNS)}")
    excluded = catch_failures(answers, min_catch_correct)
    kept = answers[~answers["rater"].isin(excluded) & ~answers["catch"].astype(bool)].copy()
    if kept.empty:
        raise TalkbenchError("no answers left to analyse (all raters excluded or only catch trials)")
    kept["winner"] = np.where(kept["choice"] == "left", kept["left"], kept["right"])
    kept["loser"] = np.where(kept["choice"] == "left", kept["right"], kept["left"])
    methods = sorted(set(kept["left"]) | set(kept["right"]))
    results: list[PairResult] = []
    for criterion, group in kept.groupby("criterion", sort=True):
        for a, b in combinations(methods, 2):
            pair = group[
                ((group["left"] == a) & (group["right"] == b))
                | ((group["left"] == b) & (group["right"] == a))
            ]
            if pair.empty:
                continue
            wins_a = int((pair["winner"] == a).sum())
            rate, p, lo, hi = binomial_summary(wins_a, len(pair))
            results.append(PairResult(a, b, criterion, wins_a, len(pair), rate, lo, hi, p))
    for r, adj in zip(results, holm([r.p_value for r in results])):
        r.p_holm = adj
    scores = {}
    if len(methods) >= 3:
        for criterion, group in kept.groupby("criterion", sort=True):
            index = {m: i for i, m in enumerate(methods)}
            wins = np.zeros((len(methods), len(methods)))
            for winner, loser in zip(group["winner"], group["loser"]):
                wins[index[winner], index[loser]] += 1
            scores[criterion] = dict(zip(methods, bradley_terry(wins).tolist()))
    return {
        "pairs": pd.DataFrame([r.__dict__ for r in results]),
        "bradley_terry": scores,
        "excluded_raters": sorted(excluded),
        "n_raters": int(answers["rater"].nunique()),
        "n_answers": int(len(kept)),
        "kept": kept,  # the analysed answers with winner/loser (study/correlation.py reads them per clip)
    }


def load_answers(path) -> pd.DataFrame:
    """Answers from a study folder (its SQLite store joined with the manifest) or an exported CSV."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        from talkbench.study.app import load_manifest
        from talkbench.study.store import AnswerStore

        if not (path / "answers.db").is_file():
            raise TalkbenchError(f"{path}: no answers.db yet (serve the study with `bench study serve`)")
        manifest = load_manifest(path)
        trials = pd.DataFrame(manifest["trials"]).rename(columns={"id": "trial"})
        answers = AnswerStore(path / "answers.db").frame()
        joined = ["left", "right", "catch", "expected", "clip", "method", "check", "repeat_of"]
        df = answers.merge(trials[["trial", *(c for c in joined if c in trials)]], on="trial", how="left")
    elif path.is_file():
        from talkbench.study.store import unescape_cell

        text = {
            c: "string"
            for c in ("rater", "trial", "criterion", "choice", "left", "right", "expected", "method", "check")
        }
        df = pd.read_csv(path, dtype=text)
        for col in df.columns:  # undo the export's formula escaping ("'-bob" was rater "-bob")
            if df[col].dtype == object or isinstance(df[col].dtype, pd.StringDtype):
                df[col] = df[col].map(lambda v: unescape_cell(v) if isinstance(v, str) else v)
    else:
        raise TalkbenchError(f"{path}: not a study folder or an answers CSV")
    if df.empty:
        raise TalkbenchError(f"{path}: no answers recorded")
    df["catch"] = df["catch"].astype(str).str.lower().isin(("true", "1"))
    return df


def plot_preferences(pairs: pd.DataFrame, path) -> None:
    """Preference for the first method of each pair with Wilson 95% CIs, one panel per criterion."""

    def chance_line(ax) -> None:
        ax.axvline(0.5, color="grey", ls="--")
        ax.set_xlim(0, 1)

    labels = [f"{a} vs {b}" for a, b in zip(pairs["method_a"], pairs["method_b"])]
    height = 0.6 * len(pairs) / pairs["criterion"].nunique() + 2
    plot_intervals(pairs.assign(label=labels), "rate", "preference for the first method", height, path,
                   chance_line)


def plot_intervals(table: pd.DataFrame, value: str, xlabel: str, height: float, path, decorate=None) -> None:
    """One panel per criterion: each row's ``value`` with its ``ci_low``..``ci_high`` bar, labelled
    by its ``label``; ``decorate(ax)`` adds what a panel needs beyond that (a chance line, limits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    criteria = sorted(table["criterion"].unique())
    fig, axes = plt.subplots(1, len(criteria), figsize=(4.5 * len(criteria), height), squeeze=False)
    for ax, criterion in zip(axes[0], criteria):
        part = table[table["criterion"] == criterion]
        y = np.arange(len(part))
        ax.errorbar(
            part[value],
            y,
            xerr=[part[value] - part["ci_low"], part["ci_high"] - part[value]],
            fmt="o",
            capsize=4,
        )
        if decorate is not None:
            decorate(ax)
        ax.set_yticks(y, part["label"])
        ax.set_xlabel(xlabel)
        ax.set_title(criterion)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
