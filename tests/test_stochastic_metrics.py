"""The stochastic protocol (specs/stochastic-metrics.md): per-sample seeds, the deterministic default of
predict_samples, and MEE / CE / both diversities on constructed samples with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkbench.errors import DataError
from talkbench.methods.base import Method, sample_seed
from talkbench.metrics.core import lve, lve_frames
from talkbench.metrics.registry import metric_info
from talkbench.metrics.stochastic import (
    ce_frames,
    diversity_all_pairs,
    diversity_pt3d,
    mee_frames,
    score_samples,
)


def test_sample_seed_depends_on_each_value_only():
    base = sample_seed(7, "clip_a", 2, 3)
    assert base == sample_seed(7, "clip_a", 2, 3) and 0 <= base < 2**63
    others = [sample_seed(8, "clip_a", 2, 3), sample_seed(7, "clip_b", 2, 3), sample_seed(7, "clip_a", 1, 3),
              sample_seed(7, "clip_a", None, 3), sample_seed(7, "clip_a", 2, 4)]
    assert len({base, *others}) == 6
    # no global state: the seed of sample k is the same whatever was drawn before it
    forward = {k: sample_seed(1, "c", 0, k) for k in range(3)}
    torch.manual_seed(99)
    np.random.seed(99)
    assert {k: sample_seed(1, "c", 0, k) for k in (2, 0, 1)} == forward


class _Deterministic(Method):
    name = "unit-deterministic"

    def __init__(self):
        super().__init__(None, None)
        self.calls = 0

    def predict(self, audio, template, condition=None):
        self.calls += 1
        return template[None] + audio[:5, None, None]


def test_deterministic_predict_samples_predicts_once():
    m = _Deterministic()
    assert not m.samples
    out = m.predict_samples(torch.arange(10.0), torch.zeros(4, 3), None, [1, 2, 3])
    assert out.shape == (3, 5, 4, 3) and m.calls == 1
    assert torch.equal(out[0], out[2])
    with pytest.raises(ValueError, match="at least one seed"):
        m.predict_samples(torch.arange(10.0), torch.zeros(4, 3), None, [])


def _orthogonal_samples(n=10, t=4, v=10):
    """Sample k moves vertex k by 1 along x: every pair is 2 / V apart on average over vertices."""
    s = np.zeros((n, t, v, 3))
    for k in range(n):
        s[k, :, k, 0] = 1.0
    return s, np.zeros((t, v, 3))


def test_known_answers_on_orthogonal_samples():
    samples, gt = _orthogonal_samples()
    lips = [0, 1]
    assert lve(samples[0], gt, lips) == 1.0
    np.testing.assert_allclose(mee_frames(samples, gt, lips), 0.01)  # the mean moves each vertex 0.1
    frames, best = ce_frames(samples, gt, lips)
    assert best == 2 and (frames == 0).all()  # the first sample that leaves the lips alone
    assert diversity_all_pairs(samples) == pytest.approx(0.2)
    for seed in (0, 1, 1234):  # every pairing gives 0.2 here
        assert diversity_pt3d(samples, seed) == pytest.approx(0.2)
    row = score_samples(samples, gt, lips, pair_seed=5)
    assert (row.lve_sum, row.mee_sum, row.ce_sum, row.n_frames) == (4.0, pytest.approx(0.04), 0.0, 4)
    assert row.ce_index == 2 and row.n_samples == 10


def test_pt3d_pairs_five_disjoint_pairs_by_seed():
    """1-D offsets a_k = k on every vertex: a pairing's diversity is the mean |a_i - a_j| of its pairs."""
    samples = np.arange(10.0)[:, None, None, None] * np.array([1.0, 0, 0]) + np.zeros((10, 3, 6, 3))
    order = np.random.default_rng(42).permutation(10)
    expected = np.mean([abs(order[i] - order[i + 5]) for i in range(5)])
    assert diversity_pt3d(samples, 42) == pytest.approx(expected)
    assert diversity_pt3d(samples, 42) == diversity_pt3d(samples, 42)
    assert len({diversity_pt3d(samples, s) for s in range(20)}) > 1  # 5 random pairs: it varies
    # all 45 pairs: mean |i - j| over i < j of 0..9 = 11 / 3
    assert diversity_all_pairs(samples) == pytest.approx(11 / 3)
    with pytest.raises(DataError, match="N must be even"):
        diversity_pt3d(samples[:3], 0)


def test_ce_and_mee_bounds_on_random_samples():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(12, 30, 3))
    lips = np.arange(8)
    for _ in range(5):
        samples = gt + rng.normal(scale=0.3, size=(10, 12, 30, 3))
        row = score_samples(samples, gt, lips, pair_seed=1)
        lves = [lve_frames(s, gt, lips).sum() for s in samples]
        assert row.ce_sum <= row.lve_sum == lves[0]
        assert row.ce_sum == min(lves)
        assert row.mee_sum <= np.mean(lves)  # Jensen: e_t is convex in the prediction
        assert row.div_pt3d > 0 and row.div_all > 0


def test_deterministic_method_scored_with_one_sample():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(9, 20, 3))
    pred = gt + rng.normal(scale=0.1, size=gt.shape)
    row = score_samples(pred[None], gt, np.arange(5), pair_seed=0)
    assert row.mee_sum == row.ce_sum == row.lve_sum == lve_frames(pred, gt, np.arange(5)).sum()
    assert row.div_pt3d == row.div_all == 0.0 and row.n_samples == 1


def test_samples_truncate_to_the_ground_truth_and_bad_shapes_are_named():
    samples, gt = _orthogonal_samples(t=6)
    assert score_samples(samples, gt[:4], [0, 1], 0).n_frames == 4
    with pytest.raises(DataError, match=r"expected \(N, T, V, 3\)"):
        score_samples(samples[0], gt, [0, 1], 0)


def test_registry_entries():
    assert metric_info("mee").columns == ("mee_sum", "n_frames") and metric_info("mee").unit == "u^2"
    assert metric_info("ce_n10").id == "ce_n10@v1" and metric_info("ce_n10").reduction == "frame-pooled"
    assert metric_info("diversity_pt3d").unit == "u" and metric_info("diversity").columns == ("div_all",)
    assert all(metric_info(n).requires == "samples" for n in ("mee", "ce_n10", "diversity_pt3d", "diversity"))
