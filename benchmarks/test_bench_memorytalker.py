"""MemoryTalker inference speed with the `synthtalk` preset: one non-autoregressive pass over a 10 s
clip (speech encoder, style encoder on log-mel, stylized memory read, decoder), on CPU.

    .venv/bin/python -m pytest benchmarks/test_bench_memorytalker.py -p no:xdist \
        --benchmark-only -o addopts=""

The real-time factor (seconds of animation per second of compute) is stored in extra_info and
printed; the target is >= 20x on this CPU. The mesh is SynthTalk-small-sized (1000 vertices);
timing does not depend on trained weights, so the model is freshly initialised and put in the
stylized (post stage 1) state so that the whole inference path runs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from talkbench.config import load_config
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.methods.memorytalker import MemoryTalker

SECONDS = 10.0


@pytest.fixture(scope="module")
def model() -> MemoryTalker:
    torch.manual_seed(0)
    cfg = load_config("memorytalker", preset="synthtalk").method_config
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec(
        "bench",
        30.0,
        1000,
        {"train": Split(subjects)},
        subjects,
        period=30,
        regions={"lips": np.arange(100), "upper_face": np.arange(500, 600)},
    )
    m = MemoryTalker(cfg, spec)
    torch.nn.init.normal_(m.output_proj.weight, std=0.1)
    m.begin_stage(m.stages()[1])  # stylized inference path
    return m.eval()


@pytest.mark.parametrize("threads", [1])  # 1 thread: the figure that holds on a shared 2-core CPU
def test_memorytalker_10s_inference(benchmark, model, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        audio = torch.randn(int(SECONDS * 16000))
        template = torch.zeros(1000, 3)
        benchmark.group = "memorytalker-10s-inference"
        out = benchmark.pedantic(
            model.predict, args=(audio, template), rounds=5, iterations=1, warmup_rounds=1
        )
        t0 = time.perf_counter()
        model.predict(audio, template)
        once = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    assert out.shape[1:] == (1000, 3) and out.shape[0] >= 299  # int(499 / 50 * 30) frames
    rtf = SECONDS / benchmark.stats.stats.median
    benchmark.extra_info.update(threads=threads, realtime_factor=round(rtf, 1), single_call_s=round(once, 4))
    print(f"\nmemorytalker synthtalk preset, {threads} thread(s): {rtf:.1f}x real time (median)")
