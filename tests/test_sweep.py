"""Sweeps: grid planning and validation, a parent run with children, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from talkbench import sweep as sweep_mod
from talkbench.contract import CONFIG_ARTIFACT, Tag
from talkbench.errors import ConfigError
from talkbench.sweep import parse_grid, plan


def test_grid_is_parsed_and_checked_against_the_schema():
    axes = parse_grid(["mean-motion.period=10,20", "eval.n_boot=100"])
    assert [(a.key, a.values) for a in axes] == [
        ("mean-motion.period", ("10", "20")),
        ("eval.n_boot", ("100",)),
    ]
    for bad in (["period"], ["a.b="], ["x=1", "x=2"], ["dataset.name=biwi"], ["device=cpu,cuda"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="--data-root"):
        parse_grid(["dataset.root=/a,/b"])
    assert parse_grid([]) == []  # a sweep over seeds alone
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


def test_seed_in_the_grid_is_the_seed_axis_never_a_duplicate_point():
    by_seeds = plan("mean-motion", [], seeds=[0, 1], preset="tiny")
    by_grid = plan("mean-motion", ["seed=0,1"], preset="tiny")
    for sweep in (by_seeds, by_grid):
        assert [(p.values, p.seed) for p in sweep.points] == [({}, 0), ({}, 1)]
        assert sweep.axes == []
    assert by_grid.sweep_hash == by_seeds.sweep_hash  # the same sweep, so a restart finds its parent
    assert [p.config_hash for p in by_grid.points] == [p.config_hash for p in by_seeds.points]
    with_grid = plan("mean-motion", ["mean-motion.period=5,10", "seed=3"], preset="tiny")
    assert [(p.values["mean-motion.period"], p.seed) for p in with_grid.points] == [("5", 3), ("10", 3)]
    with pytest.raises(ConfigError, match="seeds are given twice"):
        plan("mean-motion", ["seed=0,1"], seeds=[0, 1], preset="tiny")
    with pytest.raises(ConfigError, match="seed=a"):
        plan("mean-motion", ["seed=a"], preset="tiny")
    assert [p.seed for p in plan("mean-motion", preset="tiny").points] == [0]


def test_compact_summary_shows_keys_status_and_headline_metrics_with_cis():
    sweep = plan("mean-motion", ["mean-motion.period=5,10"], preset="tiny")
    table = pd.DataFrame(
        {
            "mean-motion.period": ["5", "10"],
            "seed": [0, 0],
            "status": ["done", "failed"],
            "run_id": ["abc", ""],
            "lve": [1.23456, float("nan")],
            "lve_ci_low": [1.1, float("nan")],
            "lve_ci_high": [1.3, float("nan")],
            "mve": [2.0, float("nan")],
            "fdd": [0.5, float("nan")],
            "fdd_ci_low": [0.4, float("nan")],
            "fdd_ci_high": [0.6, float("nan")],
            "lse_d": [7.0, 8.0],
        }
    )
    compact = sweep_mod.compact_summary(table, sweep)
    assert list(compact.columns) == ["mean-motion.period", "seed", "status", "run_id", "lve", "mve", "fdd"]
    assert list(compact["lve"]) == ["1.235 [1.1, 1.3]", ""]
    assert list(compact["mve"]) == ["2", ""]  # no CI logged: the value alone


def test_summary_has_test_metrics_and_method_diagnostics():
    """From the store's runs table: test metrics by name, diagnostics by their diagnostic/ key; per-member
    and other metrics (losses, speed) are left out."""
    from dataclasses import replace

    sweep = plan("mean-motion", ["mean-motion.period=5,10"], preset="tiny")
    sweep.points = [replace(p, status="done", run_id=r) for p, r in zip(sweep.points, ("a", "b"))]
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "metrics.test/lve": [1.0, 2.0],
            "metrics.test/member/lve": [3.0, 4.0],
            "metrics.diagnostic/style_retrieval_top1": [0.5, 0.75],
            "metrics.speed/realtime_factor": [9.0, 9.0],
            "metrics.memorizing/loss": [0.1, 0.2],
        }
    )
    table = sweep_mod.summary(sweep, type("Store", (), {"search_runs": lambda self, dataset: runs})())
    metrics = [c for c in table.columns if c not in ("mean-motion.period", "seed", "status", "run_id")]
    assert metrics == ["lve", "diagnostic/style_retrieval_top1"]
    assert list(table["diagnostic/style_retrieval_top1"]) == [0.5, 0.75]


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


OLD_CONFIGS = Path(__file__).parent / "fixtures" / "configs_0_1_0"


def _log_0_1_0_run(tracker, name: str, tmp_path: Path) -> str:
    """A finished run as talkbench 0.1.0 logged it: its config artifact, params and (old) hash tag."""
    text = (OLD_CONFIGS / f"{name}.yaml").read_text()
    old_hash = json.loads((OLD_CONFIGS / "hashes.json").read_text())["config_hash"][name]
    raw = yaml.safe_load(text)
    experiment = tracker.ensure_experiment(raw["dataset"]["name"])
    tags = {Tag.METHOD: raw["method"], Tag.SEED: str(raw["seed"]), Tag.CONFIG_HASH: old_hash}
    run_id = tracker.create_run(experiment, tags=tags)
    flat = pd.json_normalize(raw, sep=".").iloc[0].to_dict()
    tracker.log_params(run_id, {k: v for k, v in flat.items() if not isinstance(v, list)})
    saved = tmp_path / "logged" / CONFIG_ARTIFACT
    saved.parent.mkdir()
    saved.write_text(text)
    tracker.log_artifact(run_id, saved)  # no local run dir: the sweep reads the artifact
    tracker.finish_run(run_id, "FINISHED")
    return run_id


def test_a_point_finished_by_a_0_1_0_run_is_skipped(tmp_path):
    """The run's tag is 0.1.0's hash; the sweep recognises the point from the run's saved config."""
    from talkbench.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    old_run = _log_0_1_0_run(tracker, "mean-motion-tiny", tmp_path)
    # n_boot=200 is the tiny preset's value: that point is the 0.1.0 run's; 100 is a new point
    sweep = plan("mean-motion", ["eval.n_boot=200,100"], preset="tiny")
    same, other = sweep.points
    assert (
        same.config_hash
        != json.loads((OLD_CONFIGS / "hashes.json").read_text())["config_hash"]["mean-motion-tiny"]
    )  # the identity changed since 0.1.0, so the tag alone cannot match
    finished = sweep_mod._finished_runs(tracker, sweep)
    assert finished == {(same.config_hash, "0"): old_run}
    assert other.config_hash not in {h for h, _ in finished}
    # a sweep of only that point runs nothing
    lines = []
    only = plan("mean-motion", ["eval.n_boot=200"], preset="tiny")
    table = sweep_mod.run(only, tracking_uri=tracker.uri, echo=lines.append)
    assert "1 already finished, running 0" in lines[0]
    assert only.points[0].status == "skipped" and list(table["run_id"]) == [old_run]


def test_a_seed_in_the_shared_overrides_is_refused():
    with pytest.raises(ConfigError, match="--seeds"):
        plan("mean-motion", [], overrides=["seed=3"], preset="tiny")
