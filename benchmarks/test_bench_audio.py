"""Inference at 19 s of audio against the speech encoder alone, paper-vocaset architectures.

    .venv/bin/python -m pytest benchmarks/test_bench_audio.py -p no:xdist --benchmark-only -o addopts="" -s

FaceFormer (wav2vec2-base) and MemoryTalker (HuBERT-base) with random weights (`audio.pretrained=false`:
timing does not depend on the weights) on a VOCASET-sized mesh, one thread, CPU time. For each method
the encoder alone (its forward under no_grad, as the method calls it) and the whole `predict` are
measured side by side; `ratio_to_encoder` goes into extra_info. Target (issue 16): at most 1.15.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from talkbench.config import load_config
from talkbench.datasets.spec import DatasetSpec, Split

SECONDS = 19.0
ENCODER: dict[str, float] = {}


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec() -> DatasetSpec:
    subjects = tuple(f"S{i}" for i in range(8))
    return DatasetSpec(
        "bench",
        30.0,
        5023,
        {"train": Split(subjects)},
        subjects,
        regions={"lips": np.arange(250), "upper_face": np.arange(3000, 3500)},
    )


def _build(method: str):
    torch.manual_seed(0)
    cfg = load_config(method, preset="paper-vocaset", overrides=[f"{method}.audio.pretrained=false"])
    if method == "faceformer":
        from talkbench.methods.faceformer import FaceFormer

        m = FaceFormer(cfg.method_config, _spec())
        return m.eval(), m.audio, 0
    from talkbench.methods.memorytalker import MemoryTalker

    m = MemoryTalker(cfg.method_config, _spec())
    m.begin_stage(m.stages()[-1])  # the full (stylized) inference path
    return m.eval(), m.audio_encoder, None


@pytest.fixture(scope="module", params=["faceformer", "memorytalker"])
def case(request):
    return (request.param, *_build(request.param))


@pytest.mark.benchmark(timer=time.process_time)  # CPU time: steadier than wall time on a shared machine
def test_encoder_alone(benchmark, case):
    name, _model, encoder, _ = case
    audio = torch.randn(1, int(SECONDS * 16000))

    def run():
        with torch.no_grad():
            encoder(audio, torch.tensor([audio.shape[1]]))

    benchmark.group = f"{name}-19s"
    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    ENCODER[name] = benchmark.stats.stats.min


@pytest.mark.benchmark(timer=time.process_time)
def test_predict(benchmark, case):
    name, model, _encoder, condition = case
    audio = torch.randn(int(SECONDS * 16000))
    template = torch.zeros(5023, 3)
    benchmark.group = f"{name}-19s"
    benchmark.pedantic(model.predict, args=(audio, template, condition), rounds=2, iterations=1)
    ratio = benchmark.stats.stats.min / ENCODER[name]
    benchmark.extra_info["ratio_to_encoder"] = round(ratio, 3)
    took = benchmark.stats.stats.min
    print(f"\n{name} 19 s: predict {took:.2f} CPU s, encoder {ENCODER[name]:.2f} CPU s -> {ratio:.3f}x")


@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("cached", [False, True])
def test_training_forward_frozen_cnn(benchmark, cached):
    """wav2vec2-base in training mode with its CNN frozen (the paper presets), two 4 s clips: every
    epoch after the first reads the CNN's features from the cache (`audio.cache_frozen_cnn`)."""
    from talkbench.audio.build import build_audio_encoder
    from talkbench.audio.config import AudioEncoderConfig

    torch.manual_seed(0)
    cfg = AudioEncoderConfig(kind="wav2vec2", pretrained=False, cache_frozen_cnn=cached)
    enc = build_audio_encoder(cfg, _spec()).train()
    audio, lengths = torch.randn(2, 64000), torch.tensor([64000, 56000])
    enc(audio, lengths)  # the first epoch fills the cache
    benchmark.group = "wav2vec2-train-forward-4s-x2"
    benchmark.pedantic(enc, args=(audio, lengths), rounds=2, iterations=1)
    if cached:
        assert enc.front_end_cache.hits >= 4


@pytest.mark.benchmark(timer=time.perf_counter)
@pytest.mark.parametrize("source", ["computed", "disk"])
def test_frozen_cnn_features_of_another_run(benchmark, source, tmp_path):
    """wav2vec2-base's frozen CNN on two 4 s clips in a run's first epoch: computed, or read from the
    files an earlier run with the same frozen weights left in the feature cache (another process,
    another seed or method). Wall time: the disk read is I/O. Compare the two rows' means."""
    from talkbench.audio.build import build_audio_encoder
    from talkbench.audio.config import AudioEncoderConfig
    from talkbench.audio.feature_cache import FrozenFeatureCache

    torch.manual_seed(0)
    enc = build_audio_encoder(AudioEncoderConfig(kind="wav2vec2", pretrained=False), _spec()).train()
    audio, lengths = torch.randn(2, 64000), torch.tensor([64000, 56000])
    enc.front_end_cache = FrozenFeatureCache(directory=tmp_path)
    enc.cnn(audio, lengths)  # the earlier run

    def first_epoch():
        enc.front_end_cache = FrozenFeatureCache(directory=tmp_path, disk=source == "disk")
        return enc.cnn(audio, lengths)

    benchmark.group = "wav2vec2-frozen-cnn-first-epoch-4s-x2"
    benchmark.pedantic(first_epoch, rounds=3, iterations=1)
    assert enc.front_end_cache.disk_hits == (2 if source == "disk" else 0)
