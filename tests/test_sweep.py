"""Sweeps: grid planning and validation, a parent run with children, resume after a kill."""

import os
import signal
import subprocess
import sys

import pytest

from talkbench.errors import ConfigError
from talkbench.sweep import parse_grid, plan


def test_grid_is_parsed_and_checked_against_the_schema():
    axes = parse_grid(["mean-motion.period=10,20", "eval.n_boot=100"])
    assert [(a.key, a.values) for a in axes] == [
        ("mean-motion.period", ("10", "20")),
        ("eval.n_boot", ("100",)),
    ]
    for bad in (["period"], ["a.b="], ["x=1", "x=2"], []):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="mean-motion.perod"):
        plan("mean-motion", ["mean-motion.perod=1,2"], preset="tiny")


def test_plan_is_the_cartesian_product_with_seeds_and_distinct_hashes():
    sweep = plan(
        "mean-motion", ["mean-motion.period=10,20,30", "eval.n_boot=100,200"], seeds=[0, 1], preset="tiny"
    )
    assert len(sweep.points) == 12
    hashes = {p.config_hash for p in sweep.points}
    assert len(hashes) == 6  # seeds share a config hash, grid values do not
    again = plan(
        "mean-motion", ["mean-motion.period=10,20,30", "eval.n_boot=100,200"], seeds=[0, 1], preset="tiny"
    )
    assert again.sweep_hash == sweep.sweep_hash


def _sweep_cmd(uri):
    return [
        sys.executable,
        "-m",
        "talkbench.cli",
        "sweep",
        "--method",
        "mean-motion",
        "--preset",
        "tiny",
        "--grid",
        "mean-motion.period=5,10,15",
        "--tracking-uri",
        uri,
        "--jobs",
        "1",
    ]


def _children(uri):
    from talkbench.tracking import Tracker

    runs = Tracker(uri).search_runs("synthtalk", finished_only=False)
    kids = (
        runs[runs.get("tags.mlflow.parentRunId", "").notna()]
        if "tags.mlflow.parentRunId" in runs
        else runs[:0]
    )
    return runs, kids


def test_killed_sweep_resumes_only_the_missing_points(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "TALKBENCH_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        _sweep_cmd(uri), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    # the sweep reports each finished point; kill it (and the point it is running) after the first
    for line in proc.stdout:
        if b"[done]" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the point it was running
    proc.wait()
    runs, kids = _children(uri)
    done_first = set(kids.loc[kids["status"] == "FINISHED", "run_id"])
    assert 1 <= len(done_first) < 3
    out = subprocess.run(_sweep_cmd(uri), env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(done_first)} already finished, running {3 - len(done_first)}" in out.stdout
    runs, kids = _children(uri)
    finished = kids[kids["status"] == "FINISHED"]
    assert sorted(finished["params.mean-motion.period"].astype(int)) == [5, 10, 15]  # each point once
    assert done_first <= set(finished["run_id"])  # the first sweep's results were kept, not redone
    parents = runs[runs["tags.talkbench.kind"].fillna("") == "sweep"]
    assert len(parents) == 1 and set(finished["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
