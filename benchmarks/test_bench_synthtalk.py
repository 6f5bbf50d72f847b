"""SynthTalk generation time per preset (targets on the 2-core machine: tiny < 3 s, small < 60 s).

    .venv/bin/python -m pytest benchmarks/test_bench_synthtalk.py -p no:xdist --benchmark-only \
        -o addopts="" -s

`tiny` and `small` run the whole generate() into a fresh directory each round (single process);
`clip-small` is one 3 s clip's audio synthesis, the inner cost that dominates. `full` is opt-in
(-k full) because it writes ~6 GB (400 clips x 4 s x 60 fps x 5,023 vertices, float32).
"""

from __future__ import annotations

import itertools
import shutil

import pytest

from talkbench.datasets.synthtalk import clip_audio, generate, get_preset, speaker

_counter = itertools.count()


def _generate_once(tmp_path, preset: str):
    out = tmp_path / f"{preset}-{next(_counter)}"
    generate(out, preset=preset, seed=0)
    shutil.rmtree(out)


@pytest.mark.parametrize(("preset", "rounds"), [("tiny", 5), ("small", 1)])
def test_generate(benchmark, tmp_path, preset, rounds):
    benchmark.extra_info["target_s"] = {"tiny": 3, "small": 60}[preset]
    benchmark.pedantic(_generate_once, args=(tmp_path, preset), rounds=rounds, iterations=1)


def test_generate_full(benchmark, tmp_path, request):
    if "full" not in (request.config.getoption("-k") or ""):
        pytest.skip("opt-in: -k full (writes ~6 GB)")
    benchmark.pedantic(_generate_once, args=(tmp_path, "full"), rounds=1, iterations=1)


def test_clip_audio_small(benchmark):
    p = get_preset("small")
    spk = speaker(0, 0, 0.8)
    segs, audio = benchmark(clip_audio, p, 0, spk, 0, 21)
    benchmark.extra_info["seconds_of_audio"] = len(audio) / 16000
