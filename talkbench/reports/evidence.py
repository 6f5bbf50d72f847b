"""Evidence for leaderboard cells: per-sequence tables of every seed of a row, seeds x clips CIs,
and the paired comparison that decides whether a best value is significantly best."""

from __future__ import annotations

import pandas as pd

from talkbench.contract import PER_SEQUENCE_ARTIFACT, for_member
from talkbench.errors import TalkbenchError
from talkbench.metrics.stats import (
    SeedClipComparison,
    StatBlock,
    seed_clip_comparison,
    seed_clip_estimate,
)
from talkbench.reports.rows import Leaderboard, Row


def per_sequence_tables(
    tracker, run_ids: list[str], members: dict[str, str] | None = None
) -> dict[str, pd.DataFrame | None]:
    """run id -> its per-sequence table (None when the run logged none, e.g. an imported run);
    ``members``: run id -> the member whose table to read, for runs on a mixture."""
    tables: dict[str, pd.DataFrame | None] = {}
    for run_id in run_ids:
        try:
            artifact = for_member(PER_SEQUENCE_ARTIFACT, (members or {}).get(run_id))
            path = tracker.download_artifacts(run_id, artifact)
        except TalkbenchError:
            tables[run_id] = None
            continue
        tables[run_id] = pd.read_csv(path, dtype={"condition": "string"})
    return tables


def evaluation(dataset: str, df: pd.DataFrame):
    """An Evaluation around a per-sequence table (no aggregates), for its blocks and paired tests."""
    from talkbench.metrics import Evaluation

    df = df.copy()
    df["condition"] = df["condition"].astype(object).where(df["condition"].notna(), None)
    return Evaluation(dataset, df, {}, {}, "", {})


def seed_blocks(
    row: Row, tables: dict[str, pd.DataFrame | None], dataset: str, metric: str
) -> dict[str, StatBlock]:
    """seed label -> the block of that seed's run, for runs whose table has the metric's columns."""
    from talkbench.metrics import metric_info

    needed = metric_info(metric).columns
    labels = row.seeds if len(row.seeds) == len(row.run_ids) else row.run_ids
    out = {}
    for label, run_id in zip(labels, row.run_ids):
        df = tables.get(run_id)
        if df is not None and all(c in df for c in needed):
            out[str(label)] = evaluation(dataset, df).block()
    return out


def attach(
    board: Leaderboard, tables: dict[str, pd.DataFrame | None], n_boot: int = 1000, seed: int = 0
) -> None:
    """Fill each row's seeds x clips estimates and the board's significantly best values."""
    board.evidence = True
    blocks = {
        (r.config_hash, c.name): seed_blocks(r, tables, board.dataset, c.name)
        for r in board.rows
        for c in board.columns
    }
    for r in board.rows:
        for c in board.columns:
            b = blocks[(r.config_hash, c.name)]
            if b and c.name in r.values:
                r.estimates[c.name] = seed_clip_estimate(c.name, list(b.values()), n_boot, seed)
    board.best_claims = {}
    for c in board.columns:
        ranked = board.ranked(c.name)
        if len(ranked) < 2:
            continue
        best, runner_up = ranked[0], ranked[1]
        a, b = blocks[(best.config_hash, c.name)], blocks[(runner_up.config_hash, c.name)]
        if not a or not b:
            continue
        test = seed_clip_comparison(c.name, a, b, n_boot, seed)
        if test.favours(c.direction) == "a":
            board.best_claims[c.name] = (best.config_hash, test)


def compare(
    board: Leaderboard, tables, a: Row, b: Row, metric: str, n_boot: int = 1000, seed: int = 0
) -> SeedClipComparison | None:
    """Row A minus row B on ``metric`` over seeds and clips, or None without per-sequence tables."""
    blocks_a = seed_blocks(a, tables, board.dataset, metric)
    blocks_b = seed_blocks(b, tables, board.dataset, metric)
    if not blocks_a or not blocks_b:
        return None
    return seed_clip_comparison(metric, blocks_a, blocks_b, n_boot, seed)
