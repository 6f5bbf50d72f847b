"""CodeTalker inference on a 10 s clip: `exact` (released quadratic loop) vs `fast` (KV-cached
predictor + windowed decode), side by side in one pytest-benchmark group.

    .venv/bin/python -m pytest benchmarks/test_bench_codetalker.py -p no:xdist --benchmark-only

The model is the `synthtalk` preset (CPU-sized, log-mel speech encoder) on a SynthTalk-small-sized
mesh (1000 vertices, 8 training speakers); timing does not depend on trained weights. The paper
preset (1024-d, wav2vec2) is the same procedure with wider layers.
"""

from __future__ import annotations

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
@pytest.mark.parametrize("mode", ["fast", "exact"])
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
