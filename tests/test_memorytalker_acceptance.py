"""Acceptance (slow): MemoryTalker on SynthTalk `small` through the run pipeline (= `bench run`).

1. both stages finish within 15 minutes and beat FaceFormer on the unseen test speakers in the
   speaking-style errors; in LVE they do not on SynthTalk small (a strict xfail: if it starts to hold,
   the test says so);
2. stage 2 improves on stage 1 alone (`memorytalker.stage2=false`, same seed: identical stage-1 weights);
3. with SynthTalk generated at style_coupling=0 stage 2 brings no LVE gain, at 0.8 it does (by the
   articulation error it still "gains" at 0: a strict xfail documenting why).

Test-split figures only come out of finished runs; nothing here is tuned on them. Also a script that
prints the figures (one group at a time, the CPU is shared):

    OMP_NUM_THREADS=1 python tests/test_memorytalker_acceptance.py --coupling 0.8 [--faceformer]
"""

from __future__ import annotations

import argparse
import json
import time

import pytest

from talkbench import pipeline
from talkbench.config import load_config

KEYS = ("lve", "mve", "fdd", "articulation_log_err", "upper_face_log_err")


def run_one(method: str, uri: str, coupling: float, overrides=(), seed: int = 0) -> dict[str, float]:
    cfg = load_config(
        method,
        dataset="synthtalk",
        seed=seed,
        overrides=[f"dataset.style_coupling={coupling}", "eval.render_clips=0", *overrides],
    )
    t0 = time.time()
    res = pipeline.run(cfg, tracking_uri=uri, progress=False)
    out = {k: res.metrics[f"test/{k}"] for k in KEYS}
    out["wall_s"] = time.time() - t0
    out["train_s"] = sum(res.train.stage_seconds.values()) if res.train is not None else 0.0
    out["speed"] = res.inference_speed
    return out


def stage_gain(coupling: float, uri: str) -> tuple[dict, dict]:
    both = run_one("memorytalker", uri, coupling)
    stage1 = run_one("memorytalker", uri, coupling, ["memorytalker.stage2=false"])
    return both, stage1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mt_acceptance') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def at_08(store):
    both, stage1 = stage_gain(0.8, store)
    ff = run_one("faceformer", store, 0.8)
    print(json.dumps({"memorytalker": both, "stage1": stage1, "faceformer": ff}, indent=1))
    return both, stage1, ff


@pytest.fixture(scope="module")
def at_0(store):
    return stage_gain(0.0, store)


def _gain(both: dict, stage1: dict, key: str) -> float:
    return 1 - both[key] / stage1[key]


@pytest.mark.slow
def test_both_stages_finish_within_15_minutes(at_08):
    assert at_08[0]["wall_s"] < 15 * 60  # CPU shared with other work inflates this


@pytest.mark.slow
def test_beats_faceformer_in_speaking_style(at_08):
    both, _, ff = at_08
    assert both["articulation_log_err"] < ff["articulation_log_err"]
    assert both["upper_face_log_err"] < ff["upper_face_log_err"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="on SynthTalk small FaceFormer keeps the lower LVE (issue 6 note: "
    "the memory adds nothing to lip accuracy here, memory=false gives the same LVE)",
)
def test_beats_faceformer_in_lve(at_08):
    both, _, ff = at_08
    assert both["lve"] < ff["lve"]


@pytest.mark.slow
def test_stage2_improves_on_stage1(at_08):
    both, stage1, _ = at_08
    assert both["lve"] < stage1["lve"]
    assert both["articulation_log_err"] < stage1["articulation_log_err"]


@pytest.mark.slow
def test_stage2_lve_gain_follows_style_coupling(at_08, at_0):
    assert _gain(*at_08[:2], "lve") > 0  # coupling 0.8: stage 2 lowers the lip error
    assert _gain(*at_0, "lve") < 0.02  # coupling 0: no meaningful gain


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="at coupling 0 stage 2 still lowers the articulation error through a "
    "speaker-independent opening of the mouth (bilabial recall collapses); issue 6 note",
)
def test_stage2_articulation_gain_follows_style_coupling(at_08, at_0):
    assert _gain(*at_0, "articulation_log_err") < 0.1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--coupling", type=float, default=0.8)
    parser.add_argument("--faceformer", action="store_true")
    parser.add_argument("--store", default="sqlite:///mt_acceptance.db")
    args = parser.parse_args()
    both, stage1 = stage_gain(args.coupling, args.store)
    out = {"coupling": args.coupling, "memorytalker": both, "stage1": stage1}
    if args.faceformer:
        out["faceformer"] = run_one("faceformer", args.store, args.coupling)
    print(json.dumps(out, indent=1))
