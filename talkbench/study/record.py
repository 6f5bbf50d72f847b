"""Log a study analysis as one run of the MLflow `user-study` experiment (through talkbench.tracking)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from talkbench.contract import Kind, Tag

EXPERIMENT = "user-study"  # the MLflow experiment of every study analysis


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]+", "_", text)


def log_study(result: dict, out_dir: Path, source: Path, tracking_uri: str | None = None) -> str:
    from talkbench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    experiment = tracker.ensure_experiment(EXPERIMENT)
    run_id = tracker.create_run(
        experiment,
        run_name=f"study {Path(source).name}",
        tags={Tag.KIND: Kind.USER_STUDY, Tag.SOURCE: str(source)},
    )
    metrics = {
        "raters": result["n_raters"],
        "raters_excluded": len(result["excluded_raters"]),
        "answers": result["n_answers"],
    }
    for r in result.get("mos", pd.DataFrame()).itertuples():  # a rating study
        name = _key(f"{r.method}/{r.criterion}")
        metrics.update({f"mos/{name}": r.mos, f"ci_low/{name}": r.ci_low, f"ci_high/{name}": r.ci_high})
    for r in result.get("pairs", pd.DataFrame()).itertuples():
        name = _key(f"{r.method_a}_vs_{r.method_b}/{r.criterion}")
        metrics.update(
            {
                f"pref/{name}": r.rate,
                f"ci_low/{name}": r.ci_low,
                f"ci_high/{name}": r.ci_high,
                f"p/{name}": r.p_value,
                f"p_holm/{name}": r.p_holm,
                f"n/{name}": r.n,
            }
        )
    for criterion, scores in result.get("bradley_terry", {}).items():
        metrics.update({_key(f"bt/{criterion}/{m}"): s for m, s in scores.items()})
    tracker.log_metrics(run_id, metrics)
    tracker.log_artifact(run_id, out_dir, "analysis")
    if Path(source).is_file():
        tracker.log_artifact(run_id, source, "answers")
    tracker.finish_run(run_id)
    return run_id
