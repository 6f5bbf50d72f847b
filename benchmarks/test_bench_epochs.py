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


# -- MemoryTalker's style branch, the stage-2 hot spot: per-clip loop (before) vs one padded batch ----
# clips of SynthTalk-small lengths (1.7-5.8 s, mean 3.15 s), the synthtalk preset's encoder (64 ch):
# 8 (one anchor batch) or 24 (anchor, positive and negative batches of a stage-2 step)
STYLE_SAMPLES = (32000, 38400, 43200, 48000, 51200, 56000, 62400, 72000)


@pytest.mark.benchmark(group="memorytalker-style")
@pytest.mark.parametrize("clips", [8, 24])
@pytest.mark.parametrize("mode", ["loop", "padded"])
def test_style_branch_forward_backward(benchmark, mode, clips):
    import torch

    from talkbench.methods.memorytalker.frontend import style_log_mel, style_log_mel_padded
    from talkbench.methods.memorytalker.style import SpeakingStyleEncoder, length_groups

    torch.set_num_threads(1)
    cfg = load_config("memorytalker", preset="synthtalk").method_config
    torch.manual_seed(0)
    enc = SpeakingStyleEncoder(cfg.memory_slots, channels=cfg.style_channels, n_mels=cfg.style_n_mels)
    samples = [n + 160 * (i // 8) for i, n in enumerate(STYLE_SAMPLES * (clips // 8))]
    waves = [torch.randn(n) * 0.3 for n in samples]
    audio = torch.stack([torch.nn.functional.pad(w, (0, max(samples) - w.shape[0])) for w in waves])
    lengths = torch.tensor(samples)

    def loop():  # the previous style_features: clips of distinct lengths run one by one
        return torch.cat([enc(style_log_mel(w[None]) * cfg.style_input_scale) for w in waves])

    def padded():  # MemoryTalker.style_features: padded batches of similar lengths
        out = []
        for group in length_groups(lengths):
            mel, frames = style_log_mel_padded(audio[group], lengths[group])
            out.append(enc(mel * cfg.style_input_scale, frames))
        return torch.cat(out)

    forward = loop if mode == "loop" else padded

    def step():
        enc.zero_grad(set_to_none=True)
        forward().square().sum().backward()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    benchmark.extra_info["clips"] = clips
