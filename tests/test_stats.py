"""Seeds x clips statistics on constructed data: coverage, small-n guards, paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench.errors import TalkbenchError
from talkbench.metrics.stats import (
    MIN_CLIPS,
    StatBlock,
    seed_clip_comparison,
    seed_clip_estimate,
)

M = "av_offset_abs"  # a sequence-mean metric, lower is better: its value is the column's mean


def _block(values: np.ndarray, clips: list[str] | None = None, column: str = M) -> StatBlock:
    """One seed's per-clip values as a sequence-mean metric's column."""
    clips = clips or [f"c{i}" for i in range(len(values))]
    return StatBlock(clips, ["S1"] * len(clips), [None], {column: np.asarray(values, float)[None, :]})


def _simulate(rng, n_seeds, n_clips, seed_sd, clip_sd, noise_sd, mean=5.0, clip_effect=None):
    clip_effect = clip_sd * rng.standard_normal(n_clips) if clip_effect is None else clip_effect
    seed_effect = seed_sd * rng.standard_normal((n_seeds, 1))
    return mean + seed_effect + clip_effect + noise_sd * rng.standard_normal((n_seeds, n_clips))


@pytest.mark.parametrize(
    "n_seeds, n_clips, seed_sd, clip_sd",
    [(3, 20, 1.0, 1.0), (3, 40, 1.0, 0.2), (5, 12, 0.2, 1.0)],
)
def test_two_level_bootstrap_covers_the_known_mean(n_seeds, n_clips, seed_sd, clip_sd):
    rng = np.random.default_rng(n_seeds * 100 + n_clips)
    reps, covered = 200, 0
    for i in range(reps):
        y = _simulate(rng, n_seeds, n_clips, seed_sd, clip_sd, 0.5)
        est = seed_clip_estimate(M, [_block(row) for row in y], n_boot=400, seed=i)
        lo, hi = est.ci
        covered += lo <= 5.0 <= hi
    assert 0.90 <= covered / reps <= 0.99, covered / reps


def test_clips_are_resampled_jointly_across_seeds():
    """A shared clip effect must widen the interval as much as with one seed: it does not average
    out over seeds (independent resampling per seed would shrink it by ~1/sqrt(S))."""
    rng = np.random.default_rng(0)
    clip_effect = 2.0 * rng.standard_normal(30)
    y = 5.0 + clip_effect + 0.01 * rng.standard_normal((6, 30))  # no seed effect, tiny noise
    est = seed_clip_estimate(M, [_block(row) for row in y], n_boot=1000)
    half = (est.ci[1] - est.ci[0]) / 2
    se_clips = clip_effect.std(ddof=1) / np.sqrt(30)
    assert half == pytest.approx(1.96 * se_clips, rel=0.25)


def test_estimate_mean_and_std_are_over_seeds():
    y = np.array([[1.0] * 10, [3.0] * 10, [5.0] * 10])
    est = seed_clip_estimate(M, [_block(row) for row in y])
    assert est.mean == pytest.approx(3.0) and est.std == pytest.approx(2.0)
    assert (est.n_seeds, est.n_clips) == (3, 10)
    assert est.ci[0] < 3.0 < est.ci[1]


def test_small_n_guards():
    rng = np.random.default_rng(1)
    one = seed_clip_estimate(M, [_block(rng.normal(size=40))])
    assert one.ci is None and one.reason == "one seed" and np.isnan(one.std)
    few = seed_clip_estimate(M, [_block(rng.normal(size=MIN_CLIPS - 1)) for _ in range(3)])
    assert few.ci is None and f"{MIN_CLIPS - 1} clips" in few.reason and np.isfinite(few.std)
    enough = seed_clip_estimate(M, [_block(rng.normal(size=MIN_CLIPS)) for _ in range(2)])
    assert enough.ci is not None and enough.reason == ""
    cmp = seed_clip_comparison(M, {"0": _block(rng.normal(size=40))}, {"0": _block(rng.normal(size=40))})
    assert cmp.ci is None and cmp.p_value is None and cmp.reason == "one seed"
    assert cmp.favours("lower") is None
    with pytest.raises(TalkbenchError, match="no per-sequence table"):
        seed_clip_estimate(M, [])


def test_only_clips_every_seed_scored_count():
    a = _block([1.0] * 10 + [100.0], [f"c{i}" for i in range(11)])
    b = _block([1.0] * 10, [f"c{i}" for i in range(10)])
    est = seed_clip_estimate(M, [a, b])
    assert est.n_clips == 10 and est.mean == pytest.approx(1.0)


def _methods(rng, shift, seeds_b=("0", "1", "2"), n_clips=30):
    clip_effect = 1.0 * rng.standard_normal(n_clips)
    ya = _simulate(rng, 3, n_clips, 0.05, 0, 0.05, clip_effect=clip_effect)
    yb = _simulate(rng, 3, n_clips, 0.05, 0, 0.05, mean=5.0 + shift, clip_effect=clip_effect)
    return (
        {s: _block(r) for s, r in zip(("0", "1", "2"), ya)},
        {s: _block(r) for s, r in zip(seeds_b, yb)},
    )


def test_paired_comparison_uses_the_shared_clips():
    rng = np.random.default_rng(2)
    a, b = _methods(rng, shift=0.2)
    paired = seed_clip_comparison(M, a, b)
    assert paired.paired_seeds and paired.n_clips == 30
    assert paired.diff == pytest.approx(-0.2, abs=0.1)
    assert paired.ci[1] < 0 and paired.p_value < 0.05
    assert paired.favours("lower") == "a" and paired.favours("higher") == "b" and not paired.on_abs
    # the same data under other seed labels: seeds unpaired, clips still paired -> still resolved,
    # because the large clip effect cancels within each clip
    a2, b2 = _methods(np.random.default_rng(2), shift=0.2, seeds_b=("7", "8", "9"))
    unpaired = seed_clip_comparison(M, a2, b2)
    assert not unpaired.paired_seeds and unpaired.ci[1] < 0


def test_no_difference_is_not_a_claim():
    rng = np.random.default_rng(3)
    claims = 0
    for i in range(40):
        a, b = _methods(rng, shift=0.0)
        t = seed_clip_comparison(M, a, b, n_boot=400, seed=i)
        claims += t.favours("lower") is not None
        assert (t.p_value < 0.05) == (t.ci[0] > 0 or t.ci[1] < 0)  # p and CI never disagree
    assert claims <= 6  # about 5 % false claims expected (40 x 0.05 = 2)


def test_zero_direction_compares_distances_to_zero():
    """FDD is best at 0: A around +1 beats B around -3 although A - B > 0."""
    rng = np.random.default_rng(4)
    clip_effect = 0.3 * rng.standard_normal(20)
    a = {
        str(k): _block(_simulate(rng, 1, 20, 0.1, 0, 0.1, 1.0, clip_effect)[0], column="fdd")
        for k in range(3)
    }
    b = {
        str(k): _block(_simulate(rng, 1, 20, 0.1, 0, 0.1, -3.0, clip_effect)[0], column="fdd")
        for k in range(3)
    }
    t = seed_clip_comparison("fdd", a, b)
    assert t.on_abs and t.diff == pytest.approx(abs(t.a) - abs(t.b)) and t.diff < 0
    assert t.ci[1] < 0 and t.favours("zero") == "a"
    # -1 against +1: the same distance to zero, no claim although A - B = -2
    a1 = {k: _block(v.columns["fdd"][0] - 2.0, column="fdd") for k, v in a.items()}
    assert (
        seed_clip_comparison(
            "fdd", a1, {k: _block(v.columns["fdd"][0], column="fdd") for k, v in a.items()}
        ).favours("zero")
        is None
    )
