"""Rating studies (MOS / Likert): the manifest, the app's checks, attention checks, MOS with a
two-way bootstrap CI, and the correlation of metrics with per-clip ratings, on constructed answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from talkbench.errors import TalkbenchError
from talkbench.study.analysis import load_answers
from talkbench.study.app import create_app
from talkbench.study.correlation import clip_ratings, rating_agreement
from talkbench.study.ratings import analyze_ratings, attention_failures, bootstrap_mos
from tests.study_fixtures import make_small_rating_study


def _rows(rater, ratings_by_clip, method="A", criterion="lipsync"):
    return [
        {
            "rater": rater,
            "trial": f"{method}{clip}",
            "criterion": criterion,
            "choice": str(score),
            "method": method,
            "clip": clip,
            "check": None,
            "expected": None,
            "repeat_of": None,
        }
        for clip, score in ratings_by_clip.items()
    ]


def test_mos_and_its_ci_on_a_rater_effect_with_a_known_bootstrap_distribution():
    # rater x always answers 2, rater y 4, on 10 clips: resampling clips changes nothing and the
    # two raters are drawn as {x,x}, {x,y}, {y,y} with 1/4, 1/2, 1/4 -> MOS 2, 3, 4: 95 % CI [2, 4]
    clips = [f"c{i}" for i in range(10)]
    df = pd.DataFrame(_rows("x", dict.fromkeys(clips, 2)) + _rows("y", dict.fromkeys(clips, 4)))
    df["rating"] = df["choice"].astype(int)
    assert bootstrap_mos(df, n_boot=4000) == (3.0, 2.0, 4.0)
    # a clip effect only: one rater, clips rated 1 and 5 -> the same shape over clips
    one = pd.DataFrame(_rows("x", {"c0": 1, "c1": 5})).assign(rating=lambda d: d["choice"].astype(int))
    assert bootstrap_mos(one, n_boot=4000) == (3.0, 1.0, 5.0)


def test_analysis_reports_mos_per_method_and_criterion():
    rng = np.random.default_rng(0)
    rows = []
    for r in range(8):
        for c in range(6):
            rows += _rows(f"r{r}", {f"c{c}": int(rng.integers(4, 6))}, "A", "lipsync")
            rows += _rows(f"r{r}", {f"c{c}": int(rng.integers(1, 3))}, "B", "lipsync")
            rows += _rows(f"r{r}", {f"c{c}": 3}, "B", "naturalness")
    df = pd.DataFrame(rows)
    out = analyze_ratings(df, n_boot=500).get("mos").set_index(["method", "criterion"])
    want = df.assign(s=df["choice"].astype(int)).groupby(["method", "criterion"])["s"].mean()
    assert out["mos"].to_dict() == pytest.approx(want.to_dict())
    a = out.loc[("A", "lipsync")]
    assert 4 <= a.ci_low < a.mos < a.ci_high <= 5 and (a.n, a.raters, a.clips) == (48, 8, 6)
    b = out.loc[("B", "naturalness")]
    assert (b.mos, b.ci_low, b.ci_high) == (3.0, 3.0, 3.0)


def _checks(rater, instructed_answer, repeat_answer):
    rows = _rows(rater, {"c0": 4, "c1": 2})
    base = {"rater": rater, "method": "A", "clip": "c0", "expected": None}
    rows.append(
        {
            **base,
            "trial": "r001",
            "criterion": "lipsync",
            "choice": str(repeat_answer),
            "check": "repeat",
            "repeat_of": "Ac0",
        }
    )
    rows.append(
        {
            **base,
            "trial": "a001",
            "criterion": "attention:a001",
            "choice": str(instructed_answer),
            "check": "instructed",
            "expected": "2",
            "repeat_of": None,
        }
    )
    return rows


def test_raters_failing_an_attention_check_are_excluded_and_counted():
    df = pd.DataFrame(_checks("good", 2, 5) + _checks("careless", 4, 4) + _checks("erratic", 2, 1))
    assert attention_failures(df) == {
        "careless": "instructed response",
        "erratic": "inconsistent repeats (3.0 points apart)",
    }
    result = analyze_ratings(df, n_boot=200)
    assert result["excluded_raters"] == ["careless", "erratic"] and result["n_raters"] == 3
    assert result["n_answers"] == 2  # good's two ratings; the checks themselves are not rated
    assert result["mos"].iloc[0]["mos"] == 3.0
    with pytest.raises(TalkbenchError, match="no ratings left"):
        analyze_ratings(pd.DataFrame(_checks("careless", 4, 4)))


def test_metric_agreement_with_ratings_has_the_metric_s_sign():
    # A's LVE on clip i is i; raters score clip i by 5 - i: lower error, better rating -> rho = +1
    rows = []
    for i in range(5):
        rows += _rows("r", {f"c{i}": 5 - i}, "A")
    kept = pd.DataFrame(rows).assign(rating=lambda d: d["choice"].astype(int))
    table = pd.DataFrame({"clip": [f"c{i}" for i in range(5)], "lve_sum": np.arange(5.0), "n_frames": 1.0})
    out = rating_agreement(clip_ratings(kept), {"A": table}, ["lve"], n_boot=200).iloc[0]
    assert out["rho"] == pytest.approx(1.0) and out["n_items"] == 5


def test_the_rating_manifest_and_app(tmp_path):
    study_dir = make_small_rating_study(tmp_path / "study")
    manifest = json.loads((study_dir / "manifest.json").read_text())
    trials = manifest["trials"]
    assert manifest["scale"]["points"] == 5 and manifest["criteria"] == ["lipsync", "naturalness"]
    # 2 methods + the ground truth on 2 clips, one repeat, one instructed response
    assert len(trials) == 8
    assert sorted(str(t["check"]) for t in trials).count("None") == 6
    repeat = next(t for t in trials if t["check"] == "repeat")
    assert repeat["video"] == next(t for t in trials if t["id"] == repeat["repeat_of"])["video"]
    instructed = next(t for t in trials if t["check"] == "instructed")
    assert instructed["expected"] in manifest["questions"][instructed["criteria"][0]]
    for t in trials:
        assert (study_dir / t["video"]).stat().st_size > 0
    client = create_app(study_dir).test_client()
    study = client.get("/api/study?rater=bob").get_json()
    assert study["scale"]["labels"][0] == "Bad"
    assert all("method" not in t and "expected" not in t for t in study["trials"])  # nothing leaks
    body = {"rater": "bob", "trial": trials[0]["id"], "criterion": trials[0]["criteria"][0]}
    assert client.post("/api/answer", json={**body, "choice": "left"}).status_code == 400
    assert client.post("/api/answer", json={**body, "choice": "6"}).status_code == 400
    assert client.post("/api/answer", json={**body, "choice": "4"}).get_json() == {"stored": True}
    answers = load_answers(study_dir)
    assert answers[["method", "choice"]].values.tolist() == [[trials[0]["method"], "4"]]


def test_unknown_scale_and_criteria_are_refused(tmp_path):
    with pytest.raises(TalkbenchError, match="--scale"):
        make_small_rating_study(tmp_path / "s", scale="stars")
    from talkbench.study.make import rating_criteria

    with pytest.raises(TalkbenchError, match="unknown rating criteria"):
        rating_criteria(("beauty",))
