"""evaluate(): reference pooling, conditions, bootstrap, paired tests, lip-sync and style measures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _shared import DATA

from talkbench.datasets.clip import Clip
from talkbench.datasets.spec import DatasetSpec, Split
from talkbench.errors import ConfigError, DataError
from talkbench.metrics import (
    METRICS,
    av_offset,
    bilabial_closures,
    evaluate,
    fdd,
    load_alignments,
    lve_frames,
    mouth_opening,
    mve,
    paired_test,
    pearson,
)
from talkbench.metrics.lipsync import validate_segments
from talkbench.metrics.regions import load_region
from talkbench.metrics.stats import bootstrap_weights, percentile_ci

FPS = 30.0
V = 12
LIPS = np.arange(0, 4)
UPPER = np.arange(8, 12)
AMP = {"S1": 0.010, "S2": 0.006}  # mouth opening amplitude per speaker (metres)


def _spec(**kw) -> DatasetSpec:
    base = dict(
        name="toy",
        fps=FPS,
        n_vertices=V,
        splits={"test": Split(("S1", "S2"))},
        train_subjects=("T1", "T2", "T3"),
        regions={
            "lips": LIPS,
            "upper_face": UPPER,
            "upper_lip": np.array([0, 1]),
            "lower_lip": np.array([2, 3]),
        },
        table_scales={"lve": 1e-5, "fdd": 1e-7},
    )
    base.update(kw)
    return DatasetSpec(**base)


def _make_clip(subject: str, sentence: int, rng) -> tuple[Clip, list[dict]]:
    """A face whose lower lip opens with a smooth curve and closes fully during bilabials."""
    t_n = int(rng.integers(24, 40))
    tpl = rng.normal(scale=0.05, size=(V, 3)).astype(np.float32)
    tpl[2:4, 1] = tpl[0:2, 1] - 0.004  # lower lip 4 mm below the upper lip at rest
    tpl[2:4, [0, 2]] = tpl[0:2, [0, 2]]
    t = np.arange(t_n)
    o = 0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(8, 14) + rng.uniform(0, 6))
    segments, start = [], int(rng.integers(2, 6))
    while start + 3 < t_n:
        o[start : start + 2] = 0.0
        o[start + 2 : start + 4] = np.maximum(o[start + 2 : start + 4], 0.6)  # the vowel opens
        segments.append(
            {"phoneme": "p", "category": "bilabial", "start": start / FPS, "end": (start + 2) / FPS}
        )
        segments.append(
            {"phoneme": "a", "category": "vowel", "start": (start + 2) / FPS, "end": (start + 4) / FPS}
        )
        start += int(rng.integers(7, 11))
    verts = np.repeat(tpl[None], t_n, axis=0).astype(np.float64)
    verts[:, 2:4, 1] -= (AMP[subject] * o)[:, None]
    verts[:, 0:2, 1] += (0.2 * AMP[subject] * o)[:, None]
    brow = np.cos(2 * np.pi * t / 17.0 + sentence)
    verts[:, 8:12, 1] += 0.002 * brow[:, None] + rng.normal(scale=2e-4, size=(t_n, 4))
    verts[:, 4:8] += rng.normal(scale=1e-3, size=(t_n, 4, 3))
    name = f"{subject}_sentence{sentence:02d}"
    clip = Clip(
        name,
        subject,
        sentence,
        FPS,
        np.zeros(int(t_n / FPS * 16000), np.float32),
        verts.astype(np.float32),
        tpl,
    )
    return clip, segments


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    clips, aligns = {}, {}
    for subject in ("S1", "S2"):
        for sentence in range(1, 6):
            clip, segs = _make_clip(subject, sentence, rng)
            clips[clip.name], aligns[clip.name] = clip, segs
    return _spec(), clips, aligns


def _noisy(clips, scale, seed, extra_frames=0):
    rng = np.random.default_rng(seed)
    out = []
    for name, clip in clips.items():
        v = clip.vertices.astype(np.float64)
        if extra_frames:
            v = np.concatenate([v, np.repeat(v[-1:], extra_frames, axis=0)])
        out.append((name, None, v + rng.normal(scale=scale, size=v.shape)))
    return out


# ---------------------------------------------------------------- perfect prediction


def test_ground_truth_scores_perfect(toy):
    spec, clips, aligns = toy
    ev = evaluate(((n, None, c.vertices) for n, c in clips.items()), spec, clips, aligns, n_boot=50)
    a = ev.aggregates
    for m in (
        "lve",
        "mve",
        "fdd",
        "fdd_abs",
        "av_offset",
        "av_offset_abs",
        "articulation_log_err",
        "upper_face_log_err",
        "lve_dtw",
        "lip_open_err",
        "lip_open_dtw",
    ):
        assert a[m] == pytest.approx(0.0, abs=1e-12), m
    assert a["lip_corr"] == pytest.approx(1.0)
    assert a["bilabial_recall"] == 1.0 and a["vowel_open_rate"] == 1.0
    assert a["articulation_gain/S1"] == pytest.approx(1.0) and a["upper_face_ratio/S2"] == pytest.approx(1.0)
    # every vertex metric but the stochastic protocol's, which needs drawn samples (issue 26); no
    # weight metric on a vertex dataset
    scored = {n for n in METRICS.names() if METRICS.get(n).requires != "samples"}
    scored = {n for n in scored if METRICS.get(n).target == "vertices"}
    assert set(ev.metrics) == scored and not ev.skipped
    assert ev.region_digest == spec.region_digest() and ev.metric_versions["lve"] >= 1
    assert len(ev.per_sequence) == len(clips)


# ---------------------------------------------------------------- reference pooling


def test_pooling_against_independent_computation(toy):
    spec, clips, _ = toy
    preds = _noisy(clips, 1e-3, seed=1, extra_frames=3)
    ev = evaluate(preds, spec, clips, n_boot=0)
    frames = [lve_frames(p, clips[n].vertices, LIPS) for n, _, p in preds]
    lengths = [clips[n].n_frames for n, _, _ in preds]
    pooled_lve = np.concatenate(frames).mean()
    pooled_mve = sum(mve(p, clips[n].vertices) * t for (n, _, p), t in zip(preds, lengths)) / sum(lengths)
    fdds = [fdd(p, clips[n].vertices, clips[n].template, UPPER) for n, _, p in preds]
    assert ev.aggregates["lve"] == pytest.approx(pooled_lve, rel=1e-9)
    assert ev.aggregates["lve"] != pytest.approx(np.mean([f.mean() for f in frames]), rel=1e-6)
    assert ev.aggregates["mve"] == pytest.approx(pooled_mve, rel=1e-9)
    assert ev.aggregates["fdd"] == pytest.approx(np.mean(fdds), rel=1e-9)
    assert ev.aggregates["fdd_abs"] == pytest.approx(np.mean(np.abs(fdds)), rel=1e-9)
    assert ev.per_sequence["n_frames"].tolist() == lengths  # truncated to the ground truth
    assert ev.per_sequence["n_frames_pred"].tolist() == [t + 3 for t in lengths]


def test_hand_pooled_lve_is_frame_weighted():
    tpl = np.zeros((2, 3), np.float32)
    spec = DatasetSpec("hand", 30.0, 2, {}, (), regions={"lips": np.array([0]), "upper_face": np.array([1])})
    gt_a, gt_b = np.zeros((2, 2, 3), np.float32), np.zeros((1, 2, 3), np.float32)
    clips = {
        "a": Clip("a", "X", 1, 30.0, np.zeros(1), gt_a, tpl),
        "b": Clip("b", "X", 2, 30.0, np.zeros(1), gt_b, tpl),
    }
    pa = np.zeros((2, 2, 3))
    pa[0, 0, 0], pa[1, 0, 0] = 1.0, math.sqrt(3.0)  # per-frame errors 1, 3
    pb = np.zeros((1, 2, 3))
    pb[0, 0, 1] = math.sqrt(8.0)  # error 8
    ev = evaluate([("a", None, pa), ("b", None, pb)], spec, clips, n_boot=0)
    assert ev.aggregates["lve"] == pytest.approx(4.0)  # (1 + 3 + 8) / 3, not (2 + 8) / 2
    assert ev.per_sequence["lve"].tolist() == pytest.approx([2.0, 8.0])
    assert "lip_corr" in ev.skipped and "bilabial_recall" in ev.skipped


# ---------------------------------------------------------------- conditions


def _conditioned(clips, scales=(5e-4, 1e-3, 2e-3)):
    preds = []
    for k, s in enumerate(scales):
        preds += [(n, f"T{k + 1}", v) for n, _, v in _noisy(clips, s, seed=10 + k)]
    return preds


def test_conditions_mean_and_spread(toy):
    spec, clips, aligns = toy
    preds = _conditioned(clips)
    ev = evaluate(preds, spec, clips, aligns, n_boot=0)
    assert ev.conditioned
    per = []
    for k in range(3):
        sub = [(n, None, v) for n, c, v in preds if c == f"T{k + 1}"]
        per.append(evaluate(sub, spec, clips, aligns, n_boot=0).aggregates)
    for m in ev.metrics:
        vals = np.array([p[m] for p in per])
        assert ev.aggregates[m] == pytest.approx(vals.mean(), rel=1e-9, abs=1e-15), m
        assert ev.aggregates[f"{m}/cond_std"] == pytest.approx(vals.std(), rel=1e-9, abs=1e-15), m
        assert ev.aggregates[f"{m}/cond_min"] == pytest.approx(vals.min(), rel=1e-9, abs=1e-15), m
        assert ev.aggregates[f"{m}/cond_max"] == pytest.approx(vals.max(), rel=1e-9, abs=1e-15), m
    assert per[0]["lve"] < per[2]["lve"]


def test_one_prediction_per_clip_pools_even_with_conditions(toy):
    # BIWI-Test-A: every clip conditioned on its own speaker -> one pool, no condition averaging
    spec, clips, _ = toy
    preds = [(n, clips[n].subject, v) for n, _, v in _noisy(clips, 1e-3, seed=2)]
    ev = evaluate(preds, spec, clips, n_boot=0)
    plain = evaluate([(n, None, v) for n, _, v in preds], spec, clips, n_boot=0)
    assert not ev.conditioned and "lve/cond_std" not in ev.aggregates
    assert ev.aggregates["lve"] == pytest.approx(plain.aggregates["lve"], rel=1e-12)


def test_condition_missing_a_clip(toy):
    spec, clips, _ = toy
    preds = _conditioned(clips)
    dropped = preds.pop(3)
    with pytest.raises(DataError, match=f"condition T1 has no prediction for 1 clip.*{dropped[0]}"):
        evaluate(preds, spec, clips, n_boot=0)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_equals_naive_resampling(toy):
    spec, clips, _ = toy
    preds = _noisy(clips, 1e-3, seed=3)
    n_boot, seed = 200, 7
    ev = evaluate(preds, spec, clips, n_boot=n_boot, seed=seed)
    w = bootstrap_weights(len(preds), n_boot, seed).astype(int)
    frames = [lve_frames(p, clips[n].vertices, LIPS) for n, _, p in preds]
    fdds = [fdd(p, clips[n].vertices, clips[n].template, UPPER) for n, _, p in preds]
    lve_s, fdd_s, art_s = [], [], []
    for counts in w:
        idx = np.repeat(np.arange(len(preds)), counts)  # the resampled sequences, with repeats
        lve_s.append(np.concatenate([frames[i] for i in idx]).mean())
        fdd_s.append(np.mean([fdds[i] for i in idx]))
        errs = []
        for s in ("S1", "S2"):
            ids = [i for i in idx if preds[i][0].startswith(s)]
            if ids:
                num = sum(
                    ((preds[i][2][:, LIPS] - clips[preds[i][0]].template[LIPS]) ** 2).sum() for i in ids
                )
                den = sum(
                    (
                        (
                            clips[preds[i][0]].vertices[:, LIPS].astype(np.float64)
                            - clips[preds[i][0]].template[LIPS]
                        )
                        ** 2
                    ).sum()
                    for i in ids
                )
                errs.append(abs(math.log(math.sqrt(num / den))))
        art_s.append(np.mean(errs))
    for m, samples in (("lve", lve_s), ("fdd", fdd_s), ("articulation_log_err", art_s)):
        assert ev.ci[m] == pytest.approx(percentile_ci(np.array(samples)), rel=1e-6), m
        assert ev.ci[m][0] <= ev.aggregates[m] <= ev.ci[m][1]
    again = evaluate(preds, spec, clips, n_boot=n_boot, seed=seed)
    assert again.ci == ev.ci


# ---------------------------------------------------------------- paired test


def test_paired_test_detects_better_method(toy):
    spec, clips, _ = toy
    good = evaluate(_noisy(clips, 3e-4, seed=4), spec, clips, n_boot=0)
    bad = evaluate(_noisy(clips, 1.5e-3, seed=5), spec, clips, n_boot=0)
    res = paired_test(good, bad, "lve", n_boot=500, seed=0)
    assert res.diff < 0 and res.ci[1] < 0 and res.better == "a"
    assert res.p_value < 0.01 and res.n_clips == len(clips)
    assert res.a == pytest.approx(good.aggregates["lve"]) and res.b == pytest.approx(bad.aggregates["lve"])
    same = paired_test(good, good, "lve", n_boot=100)
    assert same.diff == 0 and same.p_value == 1.0 and same.better == "tie"
    # audio-only method against a conditioned one on the same clips
    cond = evaluate(_conditioned(clips, scales=(1.5e-3, 2e-3)), spec, clips, n_boot=0)
    mixed = paired_test(good, cond, "mve", n_boot=200)
    assert mixed.b == pytest.approx(cond.aggregates["mve"]) and mixed.better == "a"
    with pytest.raises(ConfigError, match="unknown metric"):
        paired_test(good, bad, "lvee")


# ---------------------------------------------------------------- lip-sync and style


def test_offset_and_muted_style(toy):
    spec, clips, aligns = toy
    late, muted = [], []
    for n, c in clips.items():
        v = c.vertices.astype(np.float64)
        late.append((n, None, np.concatenate([np.repeat(v[:1], 2, axis=0), v[:-2]])))
        muted.append((n, None, c.template + 0.5 * (v - c.template)))
    ev_late = evaluate(late, spec, clips, n_boot=0)
    assert ev_late.per_sequence["av_offset"].tolist() == [2.0] * len(clips)
    assert ev_late.aggregates["av_offset_abs"] == 2.0
    # DTW takes most of a 2-frame offset out of the lip error (the warped ends keep a little)
    a = ev_late.aggregates
    assert a["lve_dtw"] < 0.1 * a["lve"] and a["lip_open_dtw"] < 0.1 * a["lip_open_err"]
    ev_muted = evaluate(muted, spec, clips, aligns, n_boot=0)
    assert ev_muted.aggregates["articulation_gain/S1"] == pytest.approx(0.5, rel=1e-6)
    assert ev_muted.aggregates["upper_face_ratio/S2"] == pytest.approx(0.5, rel=1e-6)
    assert ev_muted.aggregates["articulation_log_err"] == pytest.approx(math.log(2), rel=1e-6)
    assert ev_muted.aggregates["lip_corr"] == pytest.approx(1.0)
    assert ev_muted.aggregates["bilabial_recall"] == 1.0  # still closes (opening 4 mm at rest)


def test_bilabial_recall_misses_unclosed_mouth(toy):
    spec, clips, aligns = toy
    preds = []
    for n, c in clips.items():
        v = c.vertices.astype(np.float64).copy()
        v[:, 2:4, 1] = np.minimum(v[:, 2:4, 1], c.template[2:4, 1] - 0.5 * AMP[c.subject])  # never closes
        preds.append((n, None, v))
    ev = evaluate(preds, spec, clips, aligns, n_boot=0)
    assert ev.aggregates["bilabial_recall"] == 0.0
    assert ev.per_sequence["n_bilabial"].sum() == sum(
        s["category"] == "bilabial" for a in aligns.values() for s in a
    )


def test_lipsync_primitives(tmp_path):
    t = np.arange(60)
    gt = np.sin(2 * np.pi * t / 15)
    pred = np.sin(2 * np.pi * (t - 3) / 15)
    assert av_offset(pred, gt, max_lag=5) == 3
    assert av_offset(gt, pred, max_lag=5) == -3
    assert av_offset(np.ones(60), gt, max_lag=5) == 0
    assert pearson(np.ones(10), gt[:10]) == 0.0
    assert pearson(2 * gt + 1, gt) == pytest.approx(1.0)
    v = np.zeros((2, 4, 3))
    v[:, 2:, 1] = [[-3.0], [-5.0]]
    np.testing.assert_allclose(mouth_opening(v, [0, 1], [2, 3]), [3.0, 5.0])
    segs = [
        {"category": "bilabial", "start": 0.0, "end": 0.1},
        {"category": "vowel", "start": 0.1, "end": 0.2},
        {"category": "bilabial", "start": 0.2, "end": 0.3},
        {"category": "bilabial", "start": 5.0, "end": 5.1},
    ]
    opening = np.ones(10)
    opening[0] = 0.1  # closed inside the first segment (frame 0) only
    opening[3] = 0.1  # just after the second segment (frames 2, 3 exclusive): not counted
    assert bilabial_closures(opening, segs, 10.0, closed_below=0.2) == (2, 1)  # the 5 s one is past the end
    with pytest.raises(DataError, match="unknown category 'bilabal'"):
        validate_segments([{"category": "bilabal", "start": 0, "end": 1}], "x.json")
    (tmp_path / "a.json").write_text(json.dumps({"name": "A_sentence01", "segments": segs}))
    assert load_alignments(tmp_path)["A_sentence01"][2]["start"] == 0.2
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(DataError, match="b.json"):
        load_alignments(tmp_path)


# ---------------------------------------------------------------- misuse and tables


def test_evaluate_misuse(toy):
    spec, clips, aligns = toy
    name, clip = next(iter(clips.items()))
    bad = clip.vertices.astype(np.float64).copy()
    bad[5, 1, 0] = np.nan
    with pytest.raises(DataError, match=f"prediction '{name}' \\(condition T2\\): contains NaN"):
        evaluate([(name, "T2", bad)], spec, clips, n_boot=0)
    with pytest.raises(DataError, match="prediction 'nope': no clip"):
        evaluate([("nope", None, clip.vertices)], spec, clips, n_boot=0)
    with pytest.raises(DataError, match="has 11 vertices, expected 12"):
        evaluate([(name, None, clip.vertices[:, :11])], spec, clips, n_boot=0)
    with pytest.raises(DataError, match="given twice"):
        evaluate([(name, None, clip.vertices)] * 2, spec, clips, n_boot=0)
    with pytest.raises(DataError, match="no phoneme alignment for 1 predicted clip"):
        evaluate([(name, None, clip.vertices)], spec, clips, alignments={}, n_boot=0)
    with pytest.raises(DataError, match="no 'upper_face' region"):
        evaluate([(name, None, clip.vertices)], _spec(regions={"lips": LIPS}), clips, n_boot=0)
    with pytest.raises(DataError, match="region 'lips' is empty"):
        evaluate(
            [(name, None, clip.vertices)],
            _spec(regions={"lips": np.array([], np.int64), "upper_face": UPPER}),
            clips,
        )
    with pytest.raises(DataError, match="no predictions"):
        evaluate([], spec, clips)


def test_table_uses_dataset_scales(toy):
    spec, clips, _ = toy
    ev = evaluate(_noisy(clips, 1e-3, seed=6), spec, clips, n_boot=100)
    table = ev.to_table().set_index("metric")
    assert table.loc["lve", "value"] == pytest.approx(ev.aggregates["lve"] / 1e-5)
    assert table.loc["fdd", "ci_lo"] == pytest.approx(ev.ci["fdd"][0] / 1e-7)
    assert table.loc["lve", "unit"] == "m^2" and table.loc["lip_corr", "direction"] == "higher"
    assert table.loc["mve", "scale"] == 1.0  # toy dataset: no scale for mve
    flat = ev.flat()
    assert flat["lve/ci_hi"] == ev.ci["lve"][1]


def test_biwi_regions_in_evaluation():
    lips = load_region(str(DATA / "regions/BIWI_lve.txt"))
    upper = load_region(str(DATA / "regions/BIWI_fdd.txt"))
    spec = DatasetSpec("biwi", 25.0, 23370, {}, (), regions={"lips": lips, "upper_face": upper})
    rng = np.random.default_rng(0)
    tpl = rng.normal(size=(23370, 3)).astype(np.float32)
    clips = {
        f"F2_e{k}": Clip(
            f"F2_e{k}",
            "F2",
            k,
            25.0,
            np.zeros(1),
            (tpl + rng.normal(scale=0.01, size=(5, 23370, 3))).astype(np.float32),
            tpl,
        )
        for k in (37, 38)
    }
    preds = [(n, "F2", c.vertices + 0.01) for n, c in clips.items()]
    ev = evaluate(preds, spec, clips, n_boot=10)
    assert ev.aggregates["lve"] == pytest.approx(3e-4, rel=1e-4)  # every vertex off by (.01, .01, .01)
    assert ev.to_table().set_index("metric").loc["lve", "scale"] == 1e-4  # registry's BIWI scale
    moved = DatasetSpec("biwi", 25.0, 23370, {}, (), regions={"lips": lips[1:], "upper_face": upper})
    assert moved.region_digest() != ev.region_digest


def test_float32_fast_path_matches_float64_definitions(toy):
    # the evaluator keeps full-mesh differences in float32 for float32 data; must stay within 1e-6
    spec, clips, _ = toy
    preds = [(n, None, v.astype(np.float32)) for n, _, v in _noisy(clips, 1e-3, seed=8)]
    ev = evaluate(preds, spec, clips, n_boot=0)
    for (n, _, p), (_, row) in zip(preds, ev.per_sequence.iterrows()):
        g = clips[n].vertices
        assert row["mve"] == pytest.approx(mve(p, g), rel=1e-6)
        assert row["lve"] == pytest.approx(lve_frames(p, g, LIPS).mean(), rel=1e-6)
        assert row["fdd"] == pytest.approx(fdd(p, g, clips[n].template, UPPER), rel=1e-6)


def test_static_face_is_not_rewarded(toy):
    # the template method: mouth closed at rest, so bilabials "close" -- the companion metrics tell
    spec, clips, aligns = toy
    preds = [(n, None, np.repeat(c.template[None], c.n_frames, axis=0)) for n, c in clips.items()]
    ev = evaluate(preds, spec, clips, aligns, n_boot=200)
    a = ev.aggregates
    assert a["bilabial_recall"] == 1.0 and a["vowel_open_rate"] == 0.0
    assert a["lip_corr"] == 0.0 and a["av_offset"] == 0.0
    assert a["articulation_gain/S1"] == 0.0
    assert a["articulation_log_err"] == pytest.approx(math.log(1e3))  # ratio clipped at 1e-3
    assert all(np.isfinite(v) for k, v in ev.flat().items() if "log_err" in k)
    assert ev.to_table().set_index("metric").loc["fdd_abs", "scale"] == 1e-7  # shares fdd's scale


# ---------------------------------------------------------------- frame-count mismatches


def test_length_mismatches_over_one_frame_are_reported_and_truncated(toy, caplog):
    spec, clips, _ = toy
    names = list(clips)
    preds = []
    for i, name in enumerate(names):
        v = clips[name].vertices.astype(np.float64)
        if i == 0:
            v = v[:-1]  # one short: the released rounding, tolerated
        elif i == 1:
            v = v[:-3]  # three short: reported
        elif i == 2:
            v = np.concatenate([v, np.repeat(v[-1:], 2, axis=0)])  # two long: reported
        for cond in ("T1", "T2"):
            preds.append((name, cond, v))
    with caplog.at_level("WARNING", logger="talkbench.metrics.evaluate"):
        ev = evaluate(preds, spec, clips, n_boot=0)
    got = {(m.clip, m.condition, m.predicted, m.true) for m in ev.length_mismatches}
    t1, t2 = clips[names[1]].n_frames, clips[names[2]].n_frames
    assert got == {(names[1], c, t1 - 3, t1) for c in ("T1", "T2")} | {
        (names[2], c, t2 + 2, t2) for c in ("T1", "T2")
    }
    assert "4 of 20 predictions differ" in caplog.text and names[1] in caplog.text
    # still scored on the shorter length: the truncated ground truth is a perfect prediction
    row = ev.per_sequence.set_index(["clip", "condition"]).loc[(names[1], "T1")]
    assert row["n_frames"] == t1 - 3 and row["lve"] == 0.0
    exact = evaluate(((n, None, c.vertices) for n, c in clips.items()), spec, clips, n_boot=0)
    assert exact.length_mismatches == []
