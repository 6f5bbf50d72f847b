"""One training epoch (of every stage) per method with its `synthtalk` preset, before and after the
switch to the SynthTalk-pretrained speech encoder (issue 14 points 1-2):

- ``mel``: the log-mel encoder learnt from scratch, every part trained (the presets until now);
- ``synthtalk``: the pretrained encoder with its CNN front end frozen (the presets now).

    .venv/bin/python -m pytest benchmarks/test_bench_epochs.py -p no:xdist --benchmark-only -o addopts=""

Data: SynthTalk ``tiny`` (generated once per session); one intra-op thread (OMP_NUM_THREADS=1 unless
set), the setting `make run` is timed with. The default encoder is made on first use (~50 s, cached
under TALKBENCH_HOME). Scale to SynthTalk small by its training clips (x ~10 per epoch) and the
presets' epoch counts to estimate `make run`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile  # noqa: E402

import pytest  # noqa: E402

from talkbench.config import load_config  # noqa: E402
from talkbench.engine import train  # noqa: E402
from talkbench.pipeline import build_method  # noqa: E402

ONE_EPOCH = {
    "faceformer": ["faceformer.epochs=1"],
    "codetalker": ["codetalker.vq_epochs=1", "codetalker.pred_epochs=1"],
    "memorytalker": ["memorytalker.memorizing_epochs=1", "memorytalker.animating_epochs=1"],
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from talkbench.datasets.synthtalk import generate

    return generate(tmp_path_factory.mktemp("synthtalk") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def encoder():
    from talkbench.speech_pretrain.cache import ensure_pretrained_encoder

    return ensure_pretrained_encoder()  # the default encoder of the presets (cached after the first time)


@pytest.mark.benchmark(group="epoch")
@pytest.mark.parametrize("kind", ["mel", "synthtalk"])
@pytest.mark.parametrize("method", sorted(ONE_EPOCH))
def test_one_epoch(benchmark, method, kind, tiny_root, encoder):
    overrides = [*ONE_EPOCH[method], f"{method}.audio.kind={kind}", "train.checkpoint_every=0"]
    cfg = load_config(method, preset="synthtalk", data_root=tiny_root, overrides=overrides, device="cpu")
    data = cfg.dataset.load()

    def setup():
        return (build_method(cfg, data.spec), tempfile.mkdtemp()), {}

    def run(method_obj, run_dir):
        train(method_obj, data, cfg, run_dir, progress=False)

    benchmark.pedantic(run, setup=setup, rounds=2, warmup_rounds=0)
    benchmark.extra_info["train_clips"] = len(data.split("train"))
