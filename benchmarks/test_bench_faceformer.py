"""FaceFormer speed with the `synthtalk` preset, side by side in one run:

    .venv/bin/python -m pytest benchmarks/test_bench_faceformer.py -p no:xdist --benchmark-only \
        -o addopts="" -s

1. inference of a 10 s clip: KV cache (``predict``) vs re-running the whole prefix at every step (the
   released loop); the ratio and the real-time factor (s of animation per s of compute) go into
   extra_info and are printed. Target: >= 10x real time with the cache.
2. one training epoch of SynthTalk `small` (320 clips), teacher forcing, padded batches of 8
   (bucketed) vs batch size 1; the ratio is printed.

Single thread: the figure that holds on a shared 2-core CPU. Timing does not depend on trained
weights, so the models are freshly initialised (with a non-zero output head).
"""

from __future__ import annotations

import time

import pytest
import torch

from talkbench.config import load_config
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.methods.faceformer import FaceFormer

SECONDS = 10.0
TIMES: dict[str, float] = {}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model() -> FaceFormer:
    torch.manual_seed(0)
    cfg = load_config("faceformer", preset="synthtalk").method_config
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec("bench", 30.0, 1000, {"train": Split(subjects)}, subjects, period=30)
    m = FaceFormer(cfg, spec)
    torch.nn.init.normal_(m.vertice_map_r.weight, std=0.01)
    return m.eval()


def _prefix_rerun(m: FaceFormer, audio: torch.Tensor, condition: int) -> torch.Tensor:
    with torch.no_grad():
        memory, n = m.encode(audio[None], torch.tensor([audio.shape[0]]), None)
        return m.rollout(memory, m.style(torch.tensor([condition])), int(n[0]))


@pytest.mark.parametrize("path", ["kv-cache", "prefix-rerun"])
def test_faceformer_10s_inference(benchmark, model, path):
    torch.manual_seed(1)
    audio = torch.randn(int(SECONDS * 16000))
    benchmark.group = "faceformer-10s-inference"
    benchmark.extra_info["path"] = path
    if path == "kv-cache":
        out = benchmark.pedantic(model.predict, args=(audio, torch.zeros(1000, 3), 0), rounds=3, iterations=1)
        assert out.shape[1:] == (1000, 3) and out.shape[0] > 290
    else:
        out = benchmark.pedantic(_prefix_rerun, args=(model, audio, 0), rounds=1, iterations=1)
    TIMES[path] = benchmark.stats.stats.median
    benchmark.extra_info["realtime_factor"] = SECONDS / TIMES[path]
    print(
        f"\n{path}: {TIMES[path]:.3f} s for {SECONDS:.0f} s of audio ({SECONDS / TIMES[path]:.1f}x real time)"
    )
    if len(TIMES) == 2 and "prefix-rerun" in TIMES and "kv-cache" in TIMES:
        ratio = TIMES["prefix-rerun"] / TIMES["kv-cache"]
        benchmark.extra_info["speedup_vs_prefix_rerun"] = ratio
        print(f"KV cache speed-up over re-running the prefix: {ratio:.1f}x")


@pytest.fixture(scope="module")
def synthtalk_small():
    from talkbench.datasets import load_dataset

    return load_dataset(name="synthtalk", preset="small")


def _epoch(ds, batch_size: int, sampler: str) -> int:
    from talkbench.datasets import make_loader

    torch.manual_seed(0)
    cfg = load_config("faceformer", preset="synthtalk").method_config
    m = FaceFormer(cfg, ds.spec).train()
    opt = torch.optim.Adam([p for _, p in m.named_trainable(m.stages()[0])], lr=cfg.lr)
    loader = make_loader(
        ds.split("train"), sampler=sampler, batch_size=batch_size, seed=0, speaker_index=ds.spec.speaker_index
    )
    steps = 0
    for batch in loader:
        loss = m.loss("train", batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return steps


@pytest.mark.parametrize("batch_size", [8, 1])
def test_faceformer_train_epoch(benchmark, synthtalk_small, batch_size):
    benchmark.group = "faceformer-train-epoch-synthtalk-small"
    benchmark.extra_info["batch_size"] = batch_size
    sampler = "bucketed" if batch_size > 1 else "sequential"
    start = time.perf_counter()
    steps = benchmark.pedantic(_epoch, args=(synthtalk_small, batch_size, sampler), rounds=1, iterations=1)
    TIMES[f"epoch-{batch_size}"] = time.perf_counter() - start
    assert steps == -(-len(synthtalk_small.split("train")) // batch_size)
    print(f"\nbatch {batch_size}: one epoch in {TIMES[f'epoch-{batch_size}']:.1f} s ({steps} steps)")
    if "epoch-8" in TIMES and "epoch-1" in TIMES:
        ratio = TIMES["epoch-1"] / TIMES["epoch-8"]
        benchmark.extra_info["speedup_batched"] = ratio
        print(f"batched (8) epoch speed-up over batch size 1: {ratio:.1f}x")
