"""DDP under torchrun: 2 CPU processes (gloo) end with the same weights; only rank 0 logs and writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

SUPPORT = Path(__file__).with_name("_engine_support.py")


def test_torchrun_two_processes_on_cpu(tmp_path, synthtalk_tiny):
    """Training batches come from the real make_loader (rank sharding), validation from the engine's
    ShardedLoader; both reduce across ranks."""
    from talkbench.datasets import load_dataset

    n_train = len(load_dataset("synthtalk", root=synthtalk_tiny).split("train"))
    assert n_train % 8 == 0  # whole batches of 4 on each of 2 ranks: no cyclic padding
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SUPPORT), "ddp", str(tmp_path), str(synthtalk_tiny)]  # fmt: skip
    # own session, so that a hang kills the launcher and both workers, not just the launcher
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError("torchrun run hung:\n" + stderr[-3000:]) from None
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["world_size"] == r1["world_size"] == 2
    # gradients were averaged: both replicas hold the same weights, although they saw other clips
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    # each rank takes every other batch of 4: half the clips per epoch, 4 epochs, disjoint halves
    per = n_train // 2
    assert len(r0["seen"]) == len(r1["seen"]) == 4 * per
    for e in range(4):
        epoch0, epoch1 = set(r0["seen"][per * e : per * (e + 1)]), set(r1["seen"][per * e : per * (e + 1)])
        assert len(epoch0 | epoch1) == n_train and not epoch0 & epoch1
    # only rank 0 logs and writes checkpoints
    assert [s for s, _ in r0["logged"]] == [0, 1, 2, 3] and r1["logged"] == []
    assert r1["writes"] == [] and r1["artifacts"] == []
    assert (tmp_path / "run" / "checkpoints" / "model.safetensors").exists()  # rank 1 wrote no file at all
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    # the logged losses are the global means over both ranks' clips (identical reduction on both)
    assert r0["logged"][-1][1]["fine/train/loss"] > 0
