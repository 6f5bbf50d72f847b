"""A tracking store of finished SynthTalk-tiny runs and the report built from it, made once per session
(the report tests and the viewer's browser tests read both)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A tracking store with template (1 seed), mean-motion (2 seeds) and a 2-point sweep."""
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('report_store')}/mlflow.db"
    ids = {}
    ids["template"] = pipeline.run(
        load_config("template", preset="tiny"), tracking_uri=uri, progress=False
    ).run_id
    ids["mean-motion"] = [
        pipeline.run(
            load_config("mean-motion", preset="tiny", seed=s), tracking_uri=uri, progress=False
        ).run_id
        for s in (0, 1)
    ]
    tracker = Tracker(uri)
    parent = tracker.create_run(
        tracker.ensure_experiment("synthtalk"),
        run_name="sweep",
        tags={
            "talkbench.kind": "sweep",
            "talkbench.method": "mean-motion",
            "talkbench.grid": '{"mean-motion.period": ["5", "10"]}',
        },
    )
    for period in (5, 10):
        cfg = load_config("mean-motion", preset="tiny", overrides=[f"mean-motion.period={period}"])
        pipeline.run(cfg, tracking_uri=uri, progress=False, parent_run_id=parent)
    tracker.finish_run(parent)
    return uri, ids


@pytest.fixture(scope="session")
def report(store, tmp_path_factory):
    from talkbench.reports.report import build_report

    uri, _ = store
    out = tmp_path_factory.mktemp("report") / "synthtalk"
    return build_report("synthtalk", out_dir=out, formats=("html", "markdown", "latex"), tracking_uri=uri)
