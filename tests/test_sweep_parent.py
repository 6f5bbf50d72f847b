"""A sweep's parent run links every point's run, also runs reused from earlier (not its children),
and logs the grid as params (issue 13.4)."""

from __future__ import annotations

import io
import json

import _mlflow_store
import pandas as pd
import pytest

from talkbench import sweep as sweep_mod
from talkbench.contract import Tag, sweep_grid_param
from talkbench.sweep import plan
from talkbench.tracking import Tracker

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri
GRID = ["mean-motion.period=5,10"]


def _finished_elsewhere(tracker: Tracker, point) -> str:
    """A finished run of ``point`` made before the sweep (a plain `bench run`): no parent."""
    experiment = tracker.ensure_experiment("synthtalk")
    tags = {Tag.METHOD: "mean-motion", Tag.SEED: str(point.seed), Tag.CONFIG_HASH: point.config_hash}
    run_id = tracker.create_run(experiment, tags=tags)
    tracker.finish_run(run_id, "FINISHED")
    return run_id


def _parent(tracker: Tracker, sweep):
    runs = tracker.search_runs(
        "synthtalk", filter_string=f"tags.`{Tag.SWEEP_HASH}` = '{sweep.sweep_hash}'", finished_only=False
    )
    assert len(runs) == 1
    return tracker.client.get_run(runs.iloc[0]["run_id"])


def test_parent_links_reused_runs_and_logs_the_grid(store_uri, synthtalk_tiny):
    tracker = Tracker(store_uri)
    sweep = plan("mean-motion", GRID, seeds=[0, 1], preset="tiny", data_root=str(synthtalk_tiny))
    reused = {
        p.values["mean-motion.period"] + f"/{p.seed}": _finished_elsewhere(tracker, p) for p in sweep.points
    }
    lines = []
    table = sweep_mod.run(sweep, tracking_uri=store_uri, echo=lines.append)
    assert "4 already finished, running 0" in lines[0]
    assert set(table["status"]) == {"skipped"}
    parent = _parent(tracker, sweep)
    assert parent.data.params == {sweep_grid_param("mean-motion.period"): "5,10"}
    assert json.loads(parent.data.tags[Tag.POINT_RUNS]) == [p.run_id for p in sweep.points]
    assert set(json.loads(parent.data.tags[Tag.POINT_RUNS])) == set(reused.values())
    note = parent.data.tags[Tag.NOTE]
    exp = parent.info.experiment_id
    for key, run_id in reused.items():
        period, seed = key.split("/")
        line = f"- mean-motion.period={period} seed={seed}: [{run_id}](#/experiments/{exp}/runs/{run_id})"
        assert f"{line} (reused: finished earlier)" in note.splitlines(), note
    # reused runs stay where they were: not re-parented under the sweep
    for run_id in reused.values():
        assert Tag.PARENT_RUN_ID not in tracker.client.get_run(run_id).data.tags


@pytest.mark.slow  # one `bench run` subprocess (mean-motion, tiny)
def test_parent_links_its_children_and_reused_runs_together(store_uri, synthtalk_tiny):
    tracker = Tracker(store_uri)
    sweep = plan("mean-motion", GRID, preset="tiny", data_root=str(synthtalk_tiny))
    first, second = sweep.points
    old = _finished_elsewhere(tracker, first)
    sweep_mod.run(sweep, tracking_uri=store_uri, echo=lambda _: None)
    assert (first.status, second.status) == ("skipped", "done")
    parent = _parent(tracker, sweep)
    child = tracker.client.get_run(second.run_id)
    assert child.data.tags[Tag.PARENT_RUN_ID] == parent.info.run_id
    assert json.loads(parent.data.tags[Tag.POINT_RUNS]) == [old, second.run_id]
    note = parent.data.tags[Tag.NOTE].splitlines()
    assert any(second.run_id in line and "reused" not in line for line in note), note
    assert any(old in line and "reused" in line for line in note), note
    assert parent.data.params == {sweep_grid_param("mean-motion.period"): "5,10"}


def _bench_sweep(store_uri, data_root, *args):
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "talkbench.cli",
        "sweep",
        "--method",
        "mean-motion",
        "--preset",
        "tiny",
        "--data-root",
        str(data_root),
        "--tracking-uri",
        store_uri,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_seeds_alone_are_a_sweep_and_seed_in_the_grid_is_the_same_axis(store_uri, synthtalk_tiny):
    out = _bench_sweep(store_uri, synthtalk_tiny, "--seeds", "0,1")
    assert out.returncode == 0, out.stdout + out.stderr
    tracker = Tracker(store_uri)
    runs = tracker.search_runs("synthtalk", finished_only=False)
    kids = runs[runs[f"tags.{Tag.PARENT_RUN_ID}"].notna()]
    assert sorted(kids[f"tags.{Tag.SEED}"].astype(int)) == [0, 1]
    assert set(kids["status"]) == {"FINISHED"}
    # the terminal's table: keys, status, run, headline metrics with CIs; not every bound as a column
    header = next((line for line in out.stdout.splitlines() if "| status" in line), out.stdout)
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["seed", "status", "run_id", "lve", "mve", "fdd"]
    assert "_ci_low" not in out.stdout and " [" in out.stdout
    # --grid seed=0,1 is the same two points: both already finished, none run twice
    again = _bench_sweep(store_uri, synthtalk_tiny, "--grid", "seed=0,1", "--format", "csv")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 already finished, running 0" in again.stderr
    table = pd.read_csv(io.StringIO(again.stdout))
    assert sorted(table["run_id"]) == sorted(kids["run_id"]) and list(table["seed"]) == [0, 1]
    assert {"lve", "lve_ci_low", "lve_ci_high"} <= set(table.columns)  # the full table
    both = _bench_sweep(store_uri, synthtalk_tiny, "--grid", "seed=0,1", "--seeds", "0,1")
    assert both.returncode != 0 and "seeds are given twice" in both.stderr
    assert "Traceback" not in both.stderr
