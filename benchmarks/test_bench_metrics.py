"""Speed of the metric layer on a VOCASET-sized test set: 40 sequences x 150 frames x 5023 vertices,
every metric (LVE, MVE, FDD, lip-sync incl. bilabial recall, style) with 1000 bootstrap resamples.
Target: under 2 s on the development machine. Run: pytest benchmarks/test_bench_metrics.py"""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.metrics import evaluate, paired_test
from talkbench.metrics.lipsync import FLAME_MOUTH_PAIR

V, T, N, FPS = 5023, 150, 40, 30.0


@pytest.fixture(scope="module")
def vocaset_sized():
    rng = np.random.default_rng(0)
    lips = rng.choice(V, 250, replace=False)
    upper = rng.choice(np.setdiff1d(np.arange(V), lips), 827, replace=False)
    spec = DatasetSpec(
        "vocaset", FPS, V, {"test": Split(("A", "B"))}, tuple(f"T{k}" for k in range(8)),
        regions={"lips": lips, "upper_face": upper}, mouth_pair=FLAME_MOUTH_PAIR,
        table_scales={"lve": 1e-5, "fdd": 1e-7},
    )
    clips, preds, aligns = {}, [], {}
    for k in range(N):
        subject = "AB"[k % 2]
        tpl = rng.normal(scale=0.05, size=(V, 3)).astype(np.float32)
        gt = (tpl + rng.normal(scale=1e-3, size=(T, V, 3))).astype(np.float32)
        name = f"{subject}_sentence{k:02d}"
        clips[name] = Clip(name, subject, k, FPS, np.zeros(80000, np.float32), gt, tpl)
        preds.append((name, None, (gt + rng.normal(scale=1e-3, size=gt.shape)).astype(np.float32)))
        aligns[name] = [
            {"category": "bilabial", "start": s / FPS, "end": (s + 2) / FPS} for s in range(5, T, 15)
        ]
    return spec, clips, preds, aligns


def test_bench_evaluate_vocaset_sized(benchmark, vocaset_sized):
    spec, clips, preds, aligns = vocaset_sized
    ev = benchmark.pedantic(
        evaluate, args=(preds, spec, clips, aligns), kwargs={"n_boot": 1000}, rounds=3, iterations=1
    )
    assert len(ev.per_sequence) == N and len(ev.ci) == len(ev.metrics)


def test_bench_paired_test(benchmark, vocaset_sized):
    spec, clips, preds, aligns = vocaset_sized
    a = evaluate(preds, spec, clips, aligns, n_boot=0)
    b = evaluate([(n, None, c.vertices) for n, c in clips.items()], spec, clips, aligns, n_boot=0)
    res = benchmark(paired_test, a, b, "lve", 1000, 0)
    assert res.diff > 0
