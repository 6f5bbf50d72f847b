"""Weight-space metrics per channel group and vertex-space metrics through the rig, on constructed data
whose errors are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.datasets.clip import Clip
from talkbench.datasets.rig import Rig
from talkbench.datasets.spec import DatasetSpec
from talkbench.datasets.targets import channel_groups
from talkbench.errors import DataError
from talkbench.metrics import Evaluator, evaluate

CHANNELS = ("jawOpen", "mouthClose", "eyeBlinkLeft", "browInnerUp", "cheekPuff")
V = 6


def _world(rig: bool = True):
    rng = np.random.default_rng(0)
    deltas = np.zeros((len(CHANNELS), V, 3))
    deltas[0, :, 1] = -0.01  # jawOpen moves every vertex 1 cm down
    deltas[2, 4, 1] = -0.005
    template = 0.05 * rng.normal(size=(V, 3))  # face-sized: float32 rounding well below the errors
    the_rig = Rig(CHANNELS, {"S1": deltas}) if rig else None
    spec = DatasetSpec(
        "bs", 30.0, V, {}, (), regions={"lips": np.array([0, 1]), "upper_face": np.array([4, 5])},
        target="blendshapes", channels=CHANNELS, channel_groups=channel_groups(CHANNELS), rig=the_rig,
    )  # fmt: skip
    clips = {}
    for name, t in (("a", 4), ("b", 7)):
        w = rng.uniform(0, 1, (t, len(CHANNELS))).astype(np.float32)
        verts = (template + np.einsum("tk,kvc->tvc", w, deltas)).astype(np.float32)
        tpl = template.astype(np.float32)
        clips[name] = Clip(name, "S1", 1, 30.0, np.zeros(1, np.float32), verts, tpl, w)
    return spec, clips


def test_groups_follow_arkit_prefixes():
    groups = channel_groups(CHANNELS)
    assert groups["lower"].tolist() == [0, 1] and groups["upper"].tolist() == [2, 3]  # cheekPuff in neither


def test_a_known_offset_gives_the_known_errors():
    spec, clips = _world()
    c = 0.3
    preds = []
    for n, clip in clips.items():
        w = clip.weights.astype(np.float64).copy()
        w[:, 0] += c  # jawOpen too open by c on every frame
        preds.append((n, None, None, w))
    evaluator = Evaluator(spec, clips, n_boot=0)
    for n, cond, _, w in preds:
        evaluator.add(n, cond, None, weights=w)
    ev = evaluator.result()
    a = ev.aggregates
    assert a["bs_mse"] == pytest.approx(c**2 / 5)  # one channel of five
    assert a["bs_mse_lower"] == pytest.approx(c**2 / 2)  # one of jawOpen, mouthClose
    assert a["bs_mse_upper"] == pytest.approx(0.0, abs=1e-15)
    # through the rig: every vertex is c * 1 cm off
    assert a["mve"] == pytest.approx(c * 0.01, rel=1e-6)
    assert a["lve"] == pytest.approx((c * 0.01) ** 2, rel=1e-5)
    assert ev.metric_versions["bs_mse"] == 1 and "bs_mse" in ev.metrics and "lip_corr" in ev.skipped


def test_pooling_weighs_frames_and_a_lone_channel_offset_per_group():
    spec, clips = _world()
    evaluator = Evaluator(spec, clips, n_boot=0)
    for n, clip in clips.items():
        w = clip.weights.astype(np.float64).copy()
        w[:, 3] += 0.5 if n == "a" else 0.1  # browInnerUp: 4 frames off by 0.5, 7 frames by 0.1
        evaluator.add(n, None, None, weights=w)
    a = evaluator.result().aggregates
    pooled = (4 * 0.25 + 7 * 0.01) / 11
    assert a["bs_mse_upper"] == pytest.approx(pooled / 2) and a["bs_mse"] == pytest.approx(pooled / 5)
    assert a["bs_mse_lower"] == pytest.approx(0.0, abs=1e-15)
    assert a["mve"] == pytest.approx(0.0, abs=1e-7)  # browInnerUp has no shape in this rig


def test_without_a_rig_only_weight_metrics_and_vertex_predictions_skip_them():
    spec, clips = _world(rig=False)
    evaluator = Evaluator(spec, clips, n_boot=0)
    for n, clip in clips.items():
        evaluator.add(n, None, None, weights=clip.weights)
    ev = evaluator.result()
    assert ev.aggregates["bs_mse"] == 0.0 and "lve" not in ev.aggregates and "no rig" in ev.skipped["lve"]
    # a vertex method on a blendshape dataset: vertex metrics only, and it is said why
    ev = evaluate(((n, None, c.vertices) for n, c in clips.items()), spec, clips, n_boot=0)
    assert ev.aggregates["lve"] == 0.0 and "bs_mse" not in ev.aggregates
    assert "predicts vertices" in ev.skipped["bs_mse"]


def test_bad_weight_predictions_are_named():
    spec, clips = _world()
    evaluator = Evaluator(spec, clips, n_boot=0)
    with pytest.raises(DataError, match=r"prediction 'a': weights of shape \(4, 3\); expected \(T, 5\)"):
        evaluator.add("a", None, None, weights=np.zeros((4, 3)))
    w = np.zeros((7, 5))
    w[2, 1] = np.nan
    with pytest.raises(DataError, match=r"prediction 'b': contains NaN or inf .* first at frame 2"):
        evaluator.add("b", None, None, weights=w)
    evaluator = Evaluator(spec, clips, n_boot=0)
    evaluator.add("a", None, None, weights=clips["a"].weights)
    with pytest.raises(DataError, match="vertices, but the predictions before it were weights"):
        evaluator.add("b", None, clips["b"].vertices)
