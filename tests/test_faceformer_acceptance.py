"""Acceptance (slow): `bench run --method faceformer` on SynthTalk `small` beats the `template` floor by
at least 50% in LVE on the test speakers (unseen: one prediction per training-speaker condition,
metrics pooled over conditions). Also runnable as a script that prints the figures:

    OMP_NUM_THREADS=1 python tests/test_faceformer_acceptance.py [--set faceformer.key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pytest

from talkbench import pipeline
from talkbench.config import load_config


def run_both(overrides=(), seed: int = 0, store: str | None = None) -> dict[str, float]:
    """Run the pipeline for faceformer (synthtalk preset) and the template floor; return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = store or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        t0 = time.time()
        floor = pipeline.run(
            load_config("template", dataset="synthtalk", seed=seed),
            tracking_uri=uri,
            progress=False,
        )
        t1 = time.time()
        ff = pipeline.run(
            load_config("faceformer", dataset="synthtalk", overrides=overrides, seed=seed),
            tracking_uri=uri,
            progress=False,
        )
        t2 = time.time()
    return {
        "lve_template": floor.metrics["test/lve"],
        "lve_faceformer": ff.metrics["test/lve"],
        "reduction": 1 - ff.metrics["test/lve"] / floor.metrics["test/lve"],
        "faceformer_run_s": t2 - t1,
        "template_run_s": t1 - t0,
        "inference_speed": ff.inference_speed,
    }


@pytest.mark.slow
def test_faceformer_beats_template_floor_by_half_on_synthtalk_small(tmp_path):
    out = run_both(store=f"sqlite:///{tmp_path / 'mlflow.db'}")
    print(out)
    assert out["lve_faceformer"] <= 0.5 * out["lve_template"], out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    res = run_both(args.set)
    for k, v in res.items():
        print(f"{k:24s} {v:.6g}")
    sys.exit(0 if res["reduction"] >= 0.5 else 1)
