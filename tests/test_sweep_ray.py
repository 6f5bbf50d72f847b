"""Issue 15: `bench sweep --backend ray` on a real two-node local Ray cluster (`ray start --head` and
`ray start --address`); the worker node is killed during the sweep and every point still ends
finished exactly once, under one parent run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from talkbench.cli import app

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


@pytest.fixture
def ray_cluster():
    """A head (1 CPU) and one worker node (1 CPU) on this machine; yields (address, worker raylet pid,
    the nodes' TALKBENCH_HOME)."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    # the points run with the nodes' environment (their own TALKBENCH_HOME), as on a real cluster
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "TALKBENCH_HOME": f"{temp}/home",
        "HOME": temp,  # Ray reads ~/.ray (an auth token left by another Ray session breaks a no-auth cluster)
        "OMP_NUM_THREADS": "1",
    }
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        before = _raylets()
        subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--temp-dir", temp, "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        head = _raylets() - before
        worker_start = subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address",
                                       "127.0.0.1", *common], env=env, capture_output=True, text=True,
                                      timeout=180)  # fmt: skip
        assert worker_start.returncode == 0, worker_start.stdout[-2000:] + worker_start.stderr[-2000:]
        (worker,) = _raylets() - before - head
        yield f"127.0.0.1:{port}", worker, Path(temp) / "home"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _sweep_args(tmp_path, backend: str) -> list[str]:
    return ["sweep", "--method", "mean-motion", "--preset", "tiny", "--grid", "mean-motion.period=5",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--backend", backend]  # fmt: skip


def test_backend_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    out = CliRunner().invoke(app, _sweep_args(tmp_path, "ray"))
    assert out.exit_code == 2, out.output
    assert "pip install 'talkbench[ray]'" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "mlflow.db").exists()  # refused before any parent run was made


def test_unknown_backend_is_one_error(tmp_path):
    out = CliRunner().invoke(app, _sweep_args(tmp_path, "slurm"))
    assert out.exit_code == 2 and "--backend 'slurm': expected local or ray" in out.output


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@pytest.mark.slow
def test_ray_sweep_survives_a_dead_node(tmp_path, synthtalk_tiny, ray_cluster):
    from talkbench.tracking import Tracker

    address, worker_raylet, node_home = ray_cluster
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "TALKBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "talkbench.cli", "sweep", "--method", "mean-motion", "--preset", "tiny",
           "--data-root", str(synthtalk_tiny), "--grid", "mean-motion.period=5,10", "--seeds", "0,1",
           "--tracking-uri", uri, "--backend", "ray", "--address", address]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        runs_root = node_home / "runs"
        while time.monotonic() < deadline and proc.poll() is None:  # points have started: kill the node
            if runs_root.is_dir() and len(list(runs_root.iterdir())) >= 2:  # both nodes are busy
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before the node could be killed"
        _kill_tree(worker_raylet)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert "[4/4]" in out  # whole-sweep progress
    runs = Tracker(uri).search_runs("synthtalk", finished_only=False)
    parents = runs[runs["tags.talkbench.kind"] == "sweep"]
    assert len(parents) == 1
    kids = runs[runs["tags.talkbench.kind"] == "run"]
    finished = kids[kids["status"] == "FINISHED"]
    points = sorted(zip(finished["params.mean-motion.period"].astype(int), finished["tags.talkbench.seed"]))
    assert points == [(5, "0"), (5, "1"), (10, "0"), (10, "1")]  # all 4, each exactly once
    assert set(finished["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
