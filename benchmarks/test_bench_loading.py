"""Loading a batch of 8 clips through the dataset layer vs reading the same files raw.

    .venv/bin/python -m pytest benchmarks/test_bench_loading.py -p no:xdist --benchmark-only -o addopts="" -s

`raw` = np.load of each vertex file + soundfile.read of each WAV (no batching, no alignment).
`loader-warm` = one Batch from make_loader (memory-mapped [::2] vertices, cached audio, collate
into padded tensors). `loader-cold` = the same with the audio cache, memory maps and NaN checks
reset before every round (the first epoch). Each loader test records its ratio to `raw` in
extra_info and prints it. Two sizes: SynthTalk-small-like (1,000 vertices, 3 s, 16 kHz audio) and
VOCASET-like (5,023 vertices, 4 s, 22 kHz audio that must be resampled).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from datasets_fakes import write_clip, write_templates  # noqa: E402

from talkbench.datasets import make_loader  # noqa: E402
from talkbench.datasets.prepared import PreparedDataset, _AudioCache  # noqa: E402
from talkbench.datasets.spec import DatasetSpec, Split  # noqa: E402

SIZES = {"small": (1000, 3.0, 16000), "vocaset": (5023, 4.0, 22000)}
RAW_MEDIAN: dict[str, float] = {}


@pytest.fixture(scope="module", params=list(SIZES))
def dataset(request, tmp_path_factory):
    n_vertices, seconds, rate = SIZES[request.param]
    root = tmp_path_factory.mktemp(f"bench_{request.param}")
    subjects = ("Bench_S01", "Bench_S02")
    rng = np.random.default_rng(0)
    templates = {s: rng.standard_normal((n_vertices, 3)).astype(np.float32) * 0.05 for s in subjects}
    write_templates(root, templates)
    for k in range(8):
        s = subjects[k % 2]
        write_clip(
            root, f"{s}_sentence{k + 1:02d}", templates[s], seconds + 0.1 * k, sample_rate=rate, seed=k
        )
    spec = DatasetSpec("bench", 30, n_vertices, {"all": Split(subjects)}, subjects, capture_fps=60)
    return request.param, PreparedDataset(root, spec, templates)


def _read_raw(view) -> int:
    total = 0
    for ref in view.refs:
        total += np.load(ref.npy).nbytes
        total += sf.read(ref.wav, dtype="float32")[0].nbytes
    return total


def _ratio(benchmark, size: str) -> None:
    ratio = benchmark.stats.stats.median / RAW_MEDIAN[size]
    benchmark.extra_info["ratio_to_raw"] = round(ratio, 3)
    print(f"\n[{size}] {benchmark.name}: {ratio:.2f}x the time of reading the files raw")


def test_raw(benchmark, dataset):
    size, ds = dataset
    view = ds.split("all")
    benchmark.group = f"load-8-{size}"
    assert benchmark(_read_raw, view) > 0
    RAW_MEDIAN[size] = benchmark.stats.stats.median


def test_loader_warm(benchmark, dataset):
    size, ds = dataset
    loader = make_loader(ds.split("all"), sampler="sequential", batch_size=8, shuffle=False)
    benchmark.group = f"load-8-{size}"
    batch = benchmark(lambda: next(iter(loader)))
    assert len(batch) == 8
    _ratio(benchmark, size)


def test_loader_cold(benchmark, dataset):
    size, ds = dataset
    loader = make_loader(ds.split("all"), sampler="sequential", batch_size=8, shuffle=False)

    def reset():
        ds._audio = _AudioCache(ds._audio.max_bytes)
        ds._mmaps.clear()
        ds._checked.clear()

    benchmark.group = f"load-8-{size}"
    batch = benchmark.pedantic(lambda: next(iter(loader)), setup=reset, rounds=15)
    assert len(batch) == 8
    _ratio(benchmark, size)
