"""Issue 12: a SIGINT-killed `bench run` leaves a checkpoint and `bench run --resume` ends with final
weights bit-identical to an uninterrupted run (real CLI processes, their own home and store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from talkbench import checkpoint as ckpt

BENCH = [sys.executable, "-m", "talkbench.cli"]
SETS = ["--set", "faceformer.epochs=6", "--set", "train.checkpoint_every=1"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TALKBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}  # fmt: skip


def _bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*BENCH, "run", *args, "--no-progress"], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _runs(tmp_path: Path) -> set[str]:
    root = tmp_path / "home" / "runs"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(run_dir / "checkpoints" / "model.safetensors")


@pytest.mark.slow
def test_sigint_then_resume_is_bit_identical(tmp_path, synthtalk_tiny):
    common = ["--method", "faceformer", "--preset", "tiny", "--seed", "3", "--data-root", str(synthtalk_tiny)]
    _bench(tmp_path, *common, *SETS)
    (straight,) = _runs(tmp_path)

    proc = subprocess.Popen([*BENCH, "run", *common, *SETS, "--no-progress"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        last = None
        while last is None and time.monotonic() < deadline and proc.poll() is None:
            new = _runs(tmp_path) - {straight}
            if new and (tmp_path / "home" / "runs" / next(iter(new)) / "checkpoints" / "last.pt").exists():
                last = tmp_path / "home" / "runs" / next(iter(new)) / "checkpoints" / "last.pt"
            time.sleep(0.05)
        if last is None:
            proc.kill()
            raise AssertionError("no first-epoch checkpoint before the run ended:\n" + proc.communicate()[1])
        seen = ckpt.load(last)
        proc.send_signal(signal.SIGINT)  # during epoch 2 of 6
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    (killed,) = _runs(tmp_path) - {straight}
    assert "Traceback" not in err and f"bench run --resume {killed}" in err
    run_dir = tmp_path / "home" / "runs" / killed
    assert not (run_dir / "checkpoints" / "model.safetensors").exists()  # it really stopped mid-training
    saved = ckpt.load(last)  # the signal's own checkpoint, taken after the one seen before sending it
    assert (saved.stage_index, saved.epoch, saved.batch) > (seen.stage_index, seen.epoch, seen.batch)

    _bench(tmp_path, "--resume", killed)
    reference, resumed = _weights(tmp_path / "home" / "runs" / straight), _weights(run_dir)
    assert reference.keys() == resumed.keys()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), f"{key} differs after SIGINT and resume"
