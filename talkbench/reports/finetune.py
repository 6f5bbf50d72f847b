"""The report's "Fine-tuning data fraction" section: UniTalker's headline experiment (a new head fitted on
a new dataset from a trained model with a share of that dataset's clips) as a curve.

Rows of the leaderboard whose method setting ``<method>.finetune_head`` names a source are fine-tuned;
rows of the same method without one are trained from scratch. Each is placed at its
``dataset.train_fraction`` (runs logged before the option: 1) and shown with the board's cell (mean ±
std over seeds [95 % CI over seeds and clips]) of the headline metric (LVE), the training clips it used
(``Tag.TRAIN_CLIPS``) and its seeds; the figure draws one line per source and one from scratch. Runs on
a mixture and imported checkpoints are left out (they fit no head on this dataset's share).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from talkbench.contract import MODELS_SCHEME, RUNS_SCHEME, Tag, column
from talkbench.reports import figures
from talkbench.reports import leaderboard as lb
from talkbench.reports.rows import Leaderboard, Row, md_table

FRACTION = "dataset.train_fraction"
SCRATCH = "from scratch"
_RUN_ID = re.compile(r"[0-9a-f]{32}")


def _source(row: Row) -> str:
    return row.params.get(f"{row.method}.finetune_head", "") or ""


def _source_label(ref: str, tracker) -> str:
    """``fine-tuned from <method> on <what it trained on>`` for a run, the file's name for a file."""
    if ref.startswith(MODELS_SCHEME):
        return f"fine-tuned from {ref}"
    run_id = ref.removeprefix(RUNS_SCHEME).split("/")[0]
    if not _RUN_ID.fullmatch(run_id):
        return f"fine-tuned from {Path(ref).name}"
    try:
        tags = tracker.get_run(run_id).data.tags
    except Exception:  # a source run of another store: its id is all there is
        return f"fine-tuned from run {run_id[:8]}"
    trained = tags.get(Tag.DATASET, "?") + (" (imported)" if tags.get(Tag.IMPORTED) else "")
    return f"fine-tuned from {tags.get(Tag.METHOD, '?')} on {trained}, run {run_id[:8]}"


def section(board: Leaderboard, runs: pd.DataFrame, fig_dir: Path, tracker) -> list[str]:
    tuned = [r for r in board.rows if _source(r) and not r.mixture and not r.imported]
    if not tuned:
        return []
    methods = {r.method for r in tuned}
    scratch = [r for r in board.rows if r.method in methods and not _source(r) and not r.mixture
               and not r.imported and not r.floor]
    col = next((c for c in board.columns if c.name == "lve"), board.columns[0])
    clips = runs.set_index("run_id")[column(Tag.TRAIN_CLIPS)] if column(Tag.TRAIN_CLIPS) in runs else None
    labels = {ref: _source_label(ref, tracker) for ref in {_source(r) for r in tuned}}
    points = []
    for row in [*tuned, *scratch]:
        if col.name not in row.values:
            continue
        est = row.estimates.get(col.name)
        ci = est.ci if est is not None and est.ci is not None else (np.nan, np.nan)
        series = labels[_source(row)] if _source(row) else SCRATCH
        points.append({
            "fraction": float(row.params.get(FRACTION, 1.0)),
            "series": series if len(methods) == 1 else f"{row.method}: {series}",
            "mean": row.values[col.name][0] / col.scale,
            "low": ci[0] / col.scale,
            "high": ci[1] / col.scale,
            "cell": lb.cell(row, col),
            "clips": str(clips.get(row.run_ids[0], "–")) if clips is not None else "–",
            "seeds": str(len(row.run_ids)),
            "hash": row.config_hash[:6],
            "preset": row.preset,
            "scratch": not _source(row),
        })
    if not points:
        return []
    table = pd.DataFrame(points)
    if table["preset"].nunique() > 1:  # tiny beside synthtalk runs: say which is which
        table["series"] = table["series"] + " (" + table["preset"] + ")"
    # two rows of one series at one fraction (other settings) would draw a zigzag: name them apart
    twice = table.duplicated(["series", "fraction"], keep=False)
    table.loc[twice, "series"] += " [" + table.loc[twice, "hash"] + "]"
    table = table.sort_values(["scratch", "series", "fraction"])  # fine-tuned series first
    path = figures.fraction_curve(table, col.name.upper(), col.header(), fig_dir / "finetune_fraction.png")
    rows = [[f"{r.fraction:g}", r.series, r.clips, r.cell, r.seeds] for r in table.itertuples()]
    return [
        "## Fine-tuning data fraction",
        "",
        "A new head fitted on this dataset from a trained model (`finetune_head`) with a share of the "
        "training clips (`dataset.train_fraction`, drawn per speaker, nested across shares), beside the "
        "same method trained from scratch on that share. Cells: mean ± std over seeds [95 % CI over "
        "seeds and clips].",
        "",
        f"![finetune_fraction](figures/{path.name})",
        "",
        md_table(["train fraction", "model", "training clips", col.header(), "seeds"], rows),
        "",
    ]
