"""The report's "Rank stability" section: does the ranking hold across datasets (or dataset versions)
and across seeds and clips? Numbers from :mod:`talkbench.metrics.ranking`, verdicts in words.

Across datasets a method is one entry per dataset: its row with the most seeds (then the better value),
so ablation rows of the same method do not count twice; methods are matched by name.
"""

from __future__ import annotations

import pandas as pd

from talkbench.contract import Tag, column, param_column
from talkbench.errors import TalkbenchError
from talkbench.metrics.ranking import first_place_probability, first_place_verdict, rank_agreement
from talkbench.reports import evidence as ev
from talkbench.reports.rows import Leaderboard, Row, md_table


def per_method(board: Leaderboard, metric: str) -> dict[str, float]:
    """method -> the metric's mean of its row with the most seeds (ties: the better value)."""
    col = next(c for c in board.columns if c.name == metric)

    def key(r: Row) -> tuple[int, float]:
        mean = r.values[metric][0]
        return -r.n_seeds, {"higher": -mean, "zero": abs(mean)}.get(col.direction, mean)

    best: dict[str, Row] = {}
    for r in board.rows:
        if metric in r.values and (r.method not in best or key(r) < key(best[r.method])):
            best[r.method] = r
    return {m: r.values[metric][0] for m, r in best.items()}


def version_label(runs: pd.DataFrame, others: pd.DataFrame, dataset: str) -> str:
    """A dataset version named by the dataset settings that set it apart (``style_coupling=0``),
    else by its digest."""
    prefix = param_column("dataset.")
    both = pd.concat([runs, others])
    keys = [k for k in both.columns if k.startswith(prefix) and both[k].astype(str).nunique() > 1]
    if keys and not runs.empty:
        first = runs.iloc[0]
        return f"{dataset} (" + ", ".join(f"{k.split('.')[-1]}={first[k]}" for k in keys[:3]) + ")"
    digest = runs[column(Tag.DATASET_DIGEST)].dropna() if column(Tag.DATASET_DIGEST) in runs else []
    return f"{dataset} @{str(digest.iloc[0])[:8]}" if len(digest) else dataset


def section(board: Leaderboard, tables: dict, boards: dict[str, Leaderboard]) -> list[str]:
    """``board``: the report's main table; ``boards``: dataset label -> leaderboard (the main one
    included) for the comparison across datasets."""
    col = board.columns[0]
    lines = ["## Rank stability", ""]
    lines += _across_datasets(boards, col.name, col.direction)
    lines += _first_place(board, tables, col.name)
    return lines


def _across_datasets(boards: dict[str, Leaderboard], metric: str, direction: str) -> list[str]:
    values = pd.DataFrame({label: per_method(b, metric) for label, b in boards.items()})
    shared = values.dropna(thresh=2) if len(values.columns) >= 2 else values.iloc[0:0]
    if len(boards) < 2 or len(shared) < 2:
        return [
            f"Across datasets: no two datasets or dataset versions share two methods with {metric.upper()} "
            "(run them on another dataset or version, e.g. `bench report --compare synthtalk-topology2`).",
            "",
        ]
    table, pairs = rank_agreement(shared, direction)
    head = ["method", *table.columns]
    rows = [[m, *("–" if pd.isna(v) else str(int(v)) for v in table.loc[m])] for m in table.index]
    out = [
        f"Rank of each method by {metric.upper()} per dataset (1 = best; a method's row with the most "
        "seeds), and Kendall's tau-b between datasets over the methods both ran:",
        "",
        md_table(head, rows),
        "",
        md_table(
            ["datasets", "tau", "p", "methods", "pairs swapped", "the ranking"],
            [[f"{p.a} vs {p.b}", f"{p.tau:.2f}", f"{p.p_value:.2g}", str(p.n_methods), str(p.swapped),
              p.verdict] for p in pairs],
        ),
        "",
    ]
    for p in pairs:
        out.append(f"- {p.a} vs {p.b}: the ranking {p.verdict}" + (
            f" ({p.swapped} of {p.n_methods * (p.n_methods - 1) // 2} pairs of methods change order)."
            if p.n_methods >= 2 else "."
        ))
    return [*out, ""]


def _first_place(board: Leaderboard, tables: dict, metric: str) -> list[str]:
    blocks = {r.label: ev.seed_blocks(r, tables, board.dataset, metric) for r in board.rows if not r.floor}
    blocks = {k: v for k, v in blocks.items() if v}
    if len(blocks) < 2:
        return [f"First place: fewer than two learned methods with per-sequence {metric.upper()} tables.", ""]
    try:
        probs = first_place_probability(metric, blocks)
    except TalkbenchError as exc:
        return [f"First place: {exc}.", ""]
    rows = [[m, f"{100 * p:.1f} %"] for m, p in sorted(probs.items(), key=lambda kv: -kv[1])]
    return [
        f"Probability of ranking first by {metric.upper()} (floors left out): 1000 bootstrap resamples, the "
        "test clips all rows scored drawn jointly for every row and each row's seeds drawn apart.",
        "",
        md_table(["method", "P(first)"], rows),
        "",
        first_place_verdict(probs),
        "",
    ]
