"""CodeTalker inference: `exact` (released quadratic loop), `fast` (KV-cached predictor + windowed
decode) and `incremental` (KV-cached predictor + one-frame VQ decode against a cache), side by side.

    .venv/bin/python -m pytest benchmarks/test_bench_codetalker.py -p no:xdist --benchmark-only -o addopts=""

Two groups:
- the `synthtalk` preset (CPU-sized, log-mel speech encoder) on a SynthTalk-small-sized mesh (1000
  vertices, 8 training speakers), 10 s, one and eight conditions;
- the paper-vocaset architecture (1024-d, 6 + 6 layers, 5023 vertices, random weights) with a
  log-mel speech encoder in place of wav2vec2 (the speech encoder costs the same in every mode and
  is not what is measured), one thread, 10 s in every mode with one and eight conditions (`fast`:
  one), 20 s in `incremental` with one and eight; the last test checks the issue-16 ratios on CPU
  time: incremental >= 30x faster than exact at 10 s with eight conditions, and 20 s at most 2.2x
  10 s with one (the eight-condition growth is reported). `exact` at 10 s costs 5-20 CPU minutes:
  one round. `incremental` is timed with its step weights prepared (once per model and number of
  conditions: a 1 s clip before the timing). Run niced on a shared machine:

    nice -n 5 .venv/bin/python -m pytest benchmarks/test_bench_codetalker.py -p no:xdist \
        --benchmark-only -o addopts="" -k paper -s
Timing does not depend on trained weights.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.methods.codetalker import CodeTalker, CodeTalkerConfig

PRESET = Path(__file__).resolve().parents[1] / "talkbench" / "presets" / "codetalker" / "synthtalk.yaml"


@pytest.fixture(scope="module")
def model() -> CodeTalker:
    torch.manual_seed(0)
    cfg = CodeTalkerConfig(**yaml.safe_load(PRESET.read_text())["codetalker"])
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec("bench", 30.0, 1000, {"train": Split(subjects)}, subjects, period=30)
    m = CodeTalker(cfg, spec)
    torch.nn.init.normal_(m.predictor.feat_map.weight, std=0.1)
    return m.eval()


@pytest.mark.parametrize("n_conditions", [1, 8])
@pytest.mark.parametrize("mode", ["incremental", "fast", "exact"])
def test_codetalker_10s_inference(benchmark, model, mode, n_conditions):
    """One condition, and all 8 training conditions in one batched pass (what evaluation of an
    unseen-speaker clip needs). predict_conditions is called directly: no cached pass is reused."""
    torch.manual_seed(1)
    audio = torch.randn(10 * 16000)
    template = torch.zeros(1000, 3)
    benchmark.group = f"codetalker-10s-inference-{n_conditions}-conditions"
    benchmark.extra_info.update(mode=mode, n_conditions=n_conditions)
    out = benchmark.pedantic(
        model.predict_conditions,
        args=(audio, template, list(range(n_conditions)), mode),
        rounds=2,
        iterations=1,
    )
    assert out.shape[0] == n_conditions and out.shape[2:] == (1000, 3) and out.shape[1] > 290


# -- paper-vocaset architecture -----------------------------------------------------------------
PAPER = PRESET.parent / "paper-vocaset.yaml"
# exact at 10 s costs minutes of CPU time per condition (O(T^2)); a loaded machine can set fewer
SPEEDUP_SECONDS = int(os.environ.get("CODETALKER_BENCH_SECONDS", "10"))
PAPER_CPU_SECONDS: dict[tuple[str, int, int], float] = {}
CASES = sorted(
    {("incremental", 10, 1), ("incremental", 20, 1), ("incremental", 10, 8), ("incremental", 20, 8),
     ("incremental", SPEEDUP_SECONDS, 1),
     ("incremental", SPEEDUP_SECONDS, 8), ("fast", SPEEDUP_SECONDS, 1), ("exact", SPEEDUP_SECONDS, 1),
     ("exact", SPEEDUP_SECONDS, 8)}
)


@pytest.fixture(scope="module")
def paper_model():
    """One thread: CPU time is then the work done, comparable across runs on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    raw = yaml.safe_load(PAPER.read_text())["codetalker"]
    raw["audio"] = {"kind": "mel", "d_model": 256, "conv_dim": 256, "n_layers": 2, "n_heads": 4}
    cfg = CodeTalkerConfig(**raw)
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec("bench", 30.0, 5023, {"train": Split(subjects)}, subjects, period=30)
    m = CodeTalker(cfg, spec)
    torch.nn.init.normal_(m.predictor.feat_map.weight, std=0.02)
    yield m.eval()
    torch.set_num_threads(threads)


@pytest.mark.timeout(0)  # minutes of CPU time each; no per-test limit
@pytest.mark.parametrize("mode,seconds,n_conditions", CASES)
def test_codetalker_paper_vocaset_inference(benchmark, paper_model, mode, seconds, n_conditions):
    torch.manual_seed(1)
    audio = torch.randn(seconds * 16000)
    template = torch.zeros(5023, 3)
    benchmark.group = "codetalker-paper-vocaset-inference"
    cpu = []
    if mode == "incremental":
        # the step weights are prepared once per model and number of conditions (few_row_linear.reuse),
        # as a test set's first clip pays them: prepare them on a 1 s clip, outside the timing
        t0 = time.process_time()
        paper_model.predict_conditions(audio[:16000], template, list(range(n_conditions)), mode)
        benchmark.extra_info["warmup_1s_cpu_s"] = time.process_time() - t0

    def run():
        t0 = time.process_time()
        out = paper_model.predict_conditions(audio, template, list(range(n_conditions)), mode)
        cpu.append(time.process_time() - t0)
        return out

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    PAPER_CPU_SECONDS[(mode, seconds, n_conditions)] = cpu[0]
    benchmark.extra_info.update(mode=mode, seconds=seconds, n_conditions=n_conditions, cpu_s=cpu[0],
                                frames=out.shape[1])
    print(f"\n{mode} {seconds} s {n_conditions} conditions: {cpu[0]:.2f} CPU s, {out.shape[1]} frames")
    assert out.shape[0] == n_conditions and out.shape[2:] == (5023, 3) and out.shape[1] >= 29 * seconds


def test_codetalker_paper_vocaset_ratios(benchmark):
    """Issue 16 must-hold, on the CPU times of the group above (run in the same session):
    incremental >= 30x faster than exact (all 8 conditions of a clip, as evaluation runs it), and
    20 s of incremental at most 2.2x 10 s. The one-condition speedup is reported, not asserted: at
    batch 1 a step streams every weight once (memory-bound on a CPU)."""
    t = PAPER_CPU_SECONDS
    s = SPEEDUP_SECONDS
    need = [("incremental", 10, 1), ("incremental", 20, 1), ("exact", s, 8), ("incremental", s, 8)]
    if any(k not in t for k in need):
        pytest.skip("needs the paper-vocaset inference benchmarks of this session")
    speedup = {c: t[("exact", s, c)] / t[("incremental", s, c)] for c in (1, 8) if ("exact", s, c) in t}
    growth = t[("incremental", 20, 1)] / t[("incremental", 10, 1)]
    growth8 = t[("incremental", 20, 8)] / t[("incremental", 10, 8)] if ("incremental", 20, 8) in t else None
    benchmark.group = "codetalker-paper-vocaset-ratios"
    benchmark.extra_info.update(seconds=s, speedup_vs_exact=speedup, cost_20s_over_10s=growth,
                                cost_20s_over_10s_8_conditions=growth8,
                                cpu_s={"-".join(map(str, k)): v for k, v in t.items()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\nincremental vs exact at {s} s: {speedup}; incremental 20 s / 10 s: {growth:.2f}x "
          f"(8 conditions: {growth8}); cpu s {t}")
    assert speedup[8] >= 30.0
    assert growth <= 2.2
