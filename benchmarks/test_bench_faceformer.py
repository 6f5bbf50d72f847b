"""FaceFormer speed with the `synthtalk` preset, side by side in one run:

    .venv/bin/python -m pytest benchmarks/test_bench_faceformer.py -p no:xdist --benchmark-only \
        -o addopts="" -s

1. inference of a 10 s clip: KV cache (``predict``) vs re-running the whole prefix at every step,
   both as ``FaceFormer.rollout`` does it (only the last position projected) and as the released
   loop does it (every position projected to V*3 at every step); the ratios and the real-time
   factor (s of animation per s of compute) go into extra_info and are printed. Target: >= 10x
   real time with the cache.
2. one training epoch of SynthTalk `small` (320 clips), teacher forcing (the synthtalk preset),
   padded batches of 8 (bucketed) vs batch size 1; and the same for the autoregressive rollout
   (KV-cached variant) on the first 64 clips. The ratios are printed.

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


pytestmark = pytest.mark.usefixtures("one_thread")


# synthtalk: the `synthtalk` preset on a SynthTalk-small mesh (1000 vertices);
# vocaset-mesh: the same model with the paper decoder (d = 64) on a VOCASET-sized mesh (5023
# vertices), where the released loop's per-step projection of every position dominates. The speech
# encoder stays the log-mel one (no wav2vec2 weights here); it runs once per clip in every path.
MESHES = {"synthtalk": (1000, 64), "vocaset-mesh": (5023, 64)}


@pytest.fixture(scope="module", params=list(MESHES))
def model(request) -> FaceFormer:
    torch.manual_seed(0)
    n_vertices, d = MESHES[request.param]
    cfg = load_config(
        "faceformer", preset="synthtalk", overrides=[f"faceformer.feature_dim={d}"]
    ).method_config
    subjects = tuple(f"S{i}" for i in range(8))
    spec = DatasetSpec("bench", 30.0, n_vertices, {"train": Split(subjects)}, subjects, period=30)
    m = FaceFormer(cfg, spec)
    torch.nn.init.normal_(m.vertice_map_r.weight, std=0.01)
    m.bench_name = request.param
    return m.eval()


def _prefix_rerun(m: FaceFormer, audio: torch.Tensor, condition: int) -> torch.Tensor:
    """``FaceFormer.rollout``: the decoder re-runs the whole prefix, only the last position is projected."""
    with torch.no_grad():
        memory, n = m.encode(audio[None], torch.tensor([audio.shape[0]]), None)
        return m.rollout(memory, m.style(torch.tensor([condition])), int(n[0]))


def _released_loop(m: FaceFormer, audio: torch.Tensor, condition: int) -> torch.Tensor:
    """The released predict loop (spec §5.2/§7): every step re-runs the decoder over the prefix AND
    projects every position to V*3 before keeping the last one (O(T^2 * V * 3))."""
    with torch.no_grad():
        memory, n = m.encode(audio[None], torch.tensor([audio.shape[0]]), None)
        style = m.style(torch.tensor([condition]))
        t = int(n[0])
        self_mask, mem_mask = m.masks(t, memory.shape[1], memory.device)
        seq = m.first_token(style, False)
        for i in range(t):
            h = m.decoder(m.ppe(seq), memory, self_mask[:, :, : i + 1, : i + 1], mem_mask[: i + 1])
            out = m.vertice_map_r(h)
            seq = torch.cat([seq, m.vertice_map(out[:, -1:]) + style[:, None]], dim=1)
        return out


PATHS = {"prefix-rerun": _prefix_rerun, "released-loop": _released_loop}


@pytest.mark.parametrize("path", ["kv-cache", "prefix-rerun", "released-loop"])
def test_faceformer_10s_inference(benchmark, model, path):
    torch.manual_seed(1)
    audio = torch.randn(int(SECONDS * 16000))
    mesh = model.bench_name
    template = torch.zeros(model.n_vertices, 3)
    benchmark.group = f"faceformer-10s-inference-{mesh}"
    benchmark.extra_info["path"] = path
    if path == "kv-cache":
        out = benchmark.pedantic(model.predict, args=(audio, template, 0), rounds=3, iterations=1)
        assert out.shape[1:] == (model.n_vertices, 3) and out.shape[0] > 290
    else:
        out = benchmark.pedantic(PATHS[path], args=(model, audio, 0), rounds=1, iterations=1)
        cached = model.predict(audio, template, 0).flatten(1)
        assert torch.allclose(out[0], cached, atol=1e-4)  # same animation, different cost
    key = f"{mesh}/{path}"
    TIMES[key] = benchmark.stats.stats.median
    benchmark.extra_info["realtime_factor"] = SECONDS / TIMES[key]
    print(f"\n{key}: {TIMES[key]:.3f} s for {SECONDS:.0f} s of audio ({SECONDS / TIMES[key]:.1f}x real time)")
    if path != "kv-cache" and f"{mesh}/kv-cache" in TIMES:
        ratio = TIMES[key] / TIMES[f"{mesh}/kv-cache"]
        benchmark.extra_info["cache_speedup"] = ratio
        print(f"{mesh}: KV cache speed-up over {path}: {ratio:.1f}x")


@pytest.fixture(scope="module")
def synthtalk_small():
    from talkbench.datasets import load_dataset

    return load_dataset(name="synthtalk", preset="small")


def _epoch(view, spec, batch_size: int, sampler: str, mode: str) -> int:
    from talkbench.datasets import make_loader

    torch.manual_seed(0)
    overrides = [f"faceformer.train_mode={mode}", "faceformer.ar_cache=true"]
    cfg = load_config("faceformer", preset="synthtalk", overrides=overrides).method_config
    m = FaceFormer(cfg, spec).train()
    opt = torch.optim.Adam([p for _, p in m.named_trainable(m.stages()[0])], lr=cfg.lr)
    loader = make_loader(
        view, sampler=sampler, batch_size=batch_size, seed=0, speaker_index=spec.speaker_index
    )
    steps = 0
    for batch in loader:
        loss = m.loss("train", batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return steps


# teacher forcing (the synthtalk preset) on the whole train split; the autoregressive rollout
# (released training mode, KV-cached variant) on the first 64 clips, where batching matters most
EPOCHS = {"teacher_forcing": None, "autoregressive": 64}


@pytest.mark.parametrize("mode", list(EPOCHS))
@pytest.mark.parametrize("batch_size", [8, 1])
def test_faceformer_train_epoch(benchmark, synthtalk_small, mode, batch_size):
    view = synthtalk_small.split("train")
    if EPOCHS[mode] is not None:
        view = view.subset(range(EPOCHS[mode]))
    benchmark.group = f"faceformer-train-epoch-synthtalk-small-{mode}"
    benchmark.extra_info.update(batch_size=batch_size, clips=len(view))
    sampler = "bucketed" if batch_size > 1 else "sequential"
    start = time.perf_counter()
    steps = benchmark.pedantic(
        _epoch, args=(view, synthtalk_small.spec, batch_size, sampler, mode), rounds=1, iterations=1
    )
    key = f"{mode}/{batch_size}"
    TIMES[key] = time.perf_counter() - start
    assert steps == -(-len(view) // batch_size)
    print(
        f"\n{mode}, batch {batch_size}: one epoch of {len(view)} clips in {TIMES[key]:.1f} s ({steps} steps)"
    )
    if f"{mode}/8" in TIMES and f"{mode}/1" in TIMES:
        ratio = TIMES[f"{mode}/1"] / TIMES[f"{mode}/8"]
        benchmark.extra_info["speedup_batched"] = ratio
        print(f"{mode}: batched (8) epoch speed-up over batch size 1: {ratio:.1f}x")
