"""DDP under torchrun: 2 CPU processes (gloo) end with the same weights; only rank 0 logs and writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

SUPPORT = Path(__file__).with_name("_engine_support.py")


def test_torchrun_two_processes_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SUPPORT), "ddp", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["world_size"] == r1["world_size"] == 2
    # gradients were averaged: both replicas hold the same weights, although they saw other clips
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    # 10 training clips in batches of 2: each rank takes every other batch, 2 per epoch, 4 epochs
    assert len(r0["seen"]) == len(r1["seen"]) == 4 * 4
    for e in range(4):
        assert not set(r0["seen"][4 * e : 4 * e + 4]) & set(r1["seen"][4 * e : 4 * e + 4])
    # only rank 0 logs and writes checkpoints
    assert [s for s, _ in r0["logged"]] == [0, 1, 2, 3] and r1["logged"] == []
    assert r1["writes"] == [] and r1["artifacts"] == []
    assert any(w.endswith("model.pt") or "model.pt" in w for w in r0["writes"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    # the logged losses are the global means over both ranks' clips (identical reduction on both)
    assert r0["logged"][-1][1]["fine/train/loss"] > 0
