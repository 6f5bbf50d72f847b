"""SynthTalk encoder pretraining cost (target on the 2-core machine: the default pretraining < 5 min).

    .venv/bin/python -m pytest benchmarks/test_bench_speech_pretrain.py -p no:xdist --benchmark-only \
        -o addopts="" -s

`train-step` is one optimiser step of the default architecture (mel encoder 128-d, 2 layers, phoneme
head) on a batch of 8 default-length clips at 1 and 2 threads: the default pretraining runs
epochs x ceil(320 / 8) = 240 of them plus the held-out evaluations. `data` is the synthesis of the
corpus (368 clips). `tiny` is the whole tiny pretraining used by the tests. The full default
pretraining is opt-in (-k default): `bench pretrain-encoder --force` does the same with tracking.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from talkbench.speech_pretrain.config import preset_config
from talkbench.speech_pretrain.data import corpus
from talkbench.speech_pretrain.encoder import PhonemeEncoder
from talkbench.speech_pretrain.train import _logits, pretrain, torch_threads


@pytest.mark.parametrize("threads", [1, 2])
def test_train_step(benchmark, threads):
    cfg = preset_config("default")
    items = corpus(cfg.seed, range(2), 4, tuple(cfg.words))
    torch.manual_seed(0)
    model = PhonemeEncoder(cfg.arch).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    def step():
        logits, labels = _logits(model, items)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch_threads(threads):
        benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


def test_data(benchmark):
    cfg = preset_config("default")

    def make():
        corpus(cfg.seed, range(cfg.train_speakers), cfg.sentences, tuple(cfg.words))

    benchmark.pedantic(make, rounds=1, iterations=1)


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_pretrain(benchmark, request, preset):
    if preset == "default" and "default" not in (request.config.getoption("-k") or ""):
        pytest.skip("opt-in: -k default (minutes)")
    benchmark.extra_info["target_s"] = 300
    with torch_threads(1):
        _, figures = benchmark.pedantic(pretrain, args=(preset_config(preset),), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in figures.items() if isinstance(v, float)})
