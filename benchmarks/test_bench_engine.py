"""Engine overhead: ``engine.train`` vs a hand-written loop doing the same optimiser steps, and the cost
of an atomic checkpoint of a 10M-parameter model with Adam state.

    .venv/bin/python -m pytest benchmarks/test_bench_engine.py -p no:xdist --benchmark-only -o addopts=""

The model is the engine tests' dummy (audio energy -> vertex offsets) on 16 in-memory training clips with
V = 1000 vertices; both variants run 2 epochs of one all-parameter stage, batch size 4, on CPU.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _engine_support as support  # noqa: E402

from talkbench import checkpoint as ckpt  # noqa: E402
from talkbench.engine import train  # noqa: E402

EPOCHS = 2


@pytest.fixture(scope="module")
def data():
    support.V = 1000  # a SynthTalk-small-sized mesh
    d = support.MemoryData(sentences=8)
    d.split("val")[:] = d.split("val")[:4]
    return d


def _cfg():
    return support.dummy_config(f"dummy.pre_epochs={EPOCHS}", "dummy.fine_epochs=0", "dummy.batch_size=4",
                                "dummy.hidden=64", "train.checkpoint_every=0")  # fmt: skip


@pytest.mark.benchmark(group="engine-overhead")
def test_engine_train(benchmark, data):
    cfg = _cfg()

    def run():
        method = support.build(cfg, data)
        with tempfile.TemporaryDirectory() as tmp:
            train(method, data, cfg, tmp, progress=False, loader_factory=support.memory_loader)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="engine-overhead")
def test_raw_loop(benchmark, data):
    cfg = _cfg()
    stage = support.DummyMethod(cfg.method_config, data.spec).stages()[0]

    def run():
        method = support.build(cfg, data)
        opt = torch.optim.Adam(method.parameters(), lr=stage.lr)
        loader = support.memory_loader(data.split("train"), batch_size=stage.batch_size)
        val = support.memory_loader(data.split("val"), sampler="sequential", batch_size=4, shuffle=False)
        for epoch in range(EPOCHS):
            loader.set_epoch(epoch)
            method.train()
            for batch in loader:
                loss = method.loss("pre", batch)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
            method.eval()
            with torch.no_grad():
                for batch in val:
                    method.validation_loss("pre", batch)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="checkpoint")
def test_atomic_checkpoint_10m_params(benchmark, tmp_path):
    model = torch.nn.Sequential(*[torch.nn.Linear(1000, 1000) for _ in range(10)])
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1000)).sum().backward()
    opt.step()
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": ckpt.capture_rng()}
    benchmark.pedantic(ckpt.atomic_save, args=(payload, tmp_path / "last.pt"), rounds=5, warmup_rounds=1)


def _train_state_10m() -> ckpt.TrainState:
    model = torch.nn.Sequential(*[torch.nn.Linear(1000, 1000) for _ in range(10)])
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1000)).sum().backward()
    opt.step()
    return ckpt.TrainState(method="m", fingerprint="f", config_hash="h", stage_index=0, epoch=1,
                           global_epoch=1, model=model.state_dict(), rng_per_rank=[ckpt.capture_rng()],
                           optimizer=opt.state_dict())  # fmt: skip


@pytest.mark.benchmark(group="checkpoint")
def test_checksummed_checkpoint_save_10m_params(benchmark, tmp_path):
    """ckpt.save: serialise, sha256 and write the envelope (compare with the plain atomic_save above)."""
    state = _train_state_10m()
    benchmark.pedantic(ckpt.save, args=(state, tmp_path / "last.pt"), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="checkpoint")
def test_checksummed_checkpoint_load_10m_params(benchmark, tmp_path):
    """ckpt.load: read, verify the sha256, deserialise."""
    ckpt.save(_train_state_10m(), tmp_path / "last.pt")
    benchmark.pedantic(ckpt.load, args=(tmp_path / "last.pt",), rounds=5, warmup_rounds=1)
