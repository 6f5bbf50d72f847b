"""Issue 15: `torchrun -m talkbench.cli run` on 2 CPU processes (gloo) makes exactly one MLflow run,
logged by rank 0, with weights every rank agrees on, and resumes after a Ctrl-C under the same
command (real torchrun, real CLI, real SQLite store)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from talkbench.checkpoint import load_weights
from talkbench.contract import Tag

SETS = ["--set", "faceformer.epochs=6", "--set", "train.checkpoint_every=1"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TALKBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}  # fmt: skip


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "talkbench.cli", "run", *args, "--no-progress", "--no-leaderboard"]  # fmt: skip


def _runs(tmp_path: Path) -> set[str]:
    root = tmp_path / "home" / "runs"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key, value in sorted(state.items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_torchrun_one_run_killed_and_resumed(tmp_path, synthtalk_tiny):
    from mlflow import MlflowClient

    common = ["--method", "faceformer", "--preset", "tiny", "--seed", "2", "--data-root", str(synthtalk_tiny)]
    # own session: Ctrl-C reaches the launcher and both workers, as in a terminal
    proc = subprocess.Popen(_torchrun(*common, *SETS), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline, last = time.monotonic() + 400, None
        while last is None and time.monotonic() < deadline and proc.poll() is None:
            runs = _runs(tmp_path)
            if runs and (tmp_path / "home" / "runs" / next(iter(runs)) / "checkpoints" / "last.pt").exists():
                last = True
            time.sleep(0.05)
        assert last, "no checkpoint before the run ended:\n" + (proc.stderr.read() if proc.poll() else "")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0, err[-3000:]
    (run_id,) = _runs(tmp_path)  # both ranks trained under the one run rank 0 created
    run_dir = tmp_path / "home" / "runs" / run_id
    assert not (run_dir / "checkpoints" / "model.safetensors").exists()  # it stopped mid-training

    done = subprocess.run(_torchrun("--resume", run_id), env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "synthtalk"]
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # exactly one MLflow run for 2 ranks, 2 launches
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tag.RESUMED] == "true" and run.data.tags[Tag.WORLD_SIZE] == "2"
    assert any(k.startswith("test/") for k in run.data.metrics)
    # the weights rank 0 saved are the ones every rank ended with (checked across ranks in the run)
    final = load_weights(run_dir / "checkpoints" / "model.safetensors")
    assert run.data.tags[Tag.REPLICA_DIGEST] == _digest(final)
