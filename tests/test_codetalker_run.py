"""`bench run --method codetalker --preset tiny` end to end: both stages through the engine,
predictions for every training condition, metrics in the store."""

from __future__ import annotations

import math

import _mlflow_store
from typer.testing import CliRunner

from talkbench import tracking
from talkbench.cli import app

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri


def test_bench_run_codetalker_tiny(store_uri, synthtalk_tiny):
    args = [
        "run",
        "--method",
        "codetalker",
        "--preset",
        "tiny",
        "--data-root",
        str(synthtalk_tiny),
        "--tracking-uri",
        store_uri,
        "--no-progress",
    ]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    runs = tracking.Tracker(store_uri).search_runs("synthtalk")
    row = runs.loc[runs["tags.talkbench.method"] == "codetalker"].iloc[0]
    assert math.isfinite(float(row["metrics.test/lve"])) and float(row["metrics.test/lve"]) > 0
    logged = set(runs.columns)
    for key in (
        "vqvae/train/perplexity",
        "vqvae/train/recon_l1",
        "predictor/train/motion_mse",
        "predictor/train/feature_mse",
    ):
        assert f"metrics.{key}" in logged, sorted(c for c in logged if c.startswith("metrics."))
