"""Rank stability on constructed results with known answers: Kendall's tau between datasets and the
bootstrap probability of ranking first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talkbench.metrics.ranking import (
    first_place_probability,
    first_place_verdict,
    rank_agreement,
    ranks,
)
from talkbench.metrics.stats import StatBlock


def test_ranks_follow_the_direction():
    v = pd.Series({"a": 3.0, "b": 1.0, "c": 2.0})
    assert ranks(v, "lower").tolist() == [3, 1, 2]
    assert ranks(v, "higher").tolist() == [1, 3, 2]
    assert ranks(pd.Series({"a": -0.1, "b": 0.5}), "zero").tolist() == [1, 2]


def test_kendall_tau_known_answers():
    values = pd.DataFrame(
        {
            "A": [1.0, 2.0, 3.0, 4.0],
            "B": [10.0, 20.0, 30.0, 40.0],  # the same order: tau = 1
            "C": [4.0, 3.0, 2.0, 1.0],  # reversed: tau = -1
            "D": [2.0, 1.0, 3.0, 4.0],  # one adjacent swap of 6 pairs: tau = (5 - 1) / 6
        },
        index=["m1", "m2", "m3", "m4"],
    )
    table, pairs = rank_agreement(values, "lower")
    assert table.loc["m1"].tolist() == [1, 1, 4, 2]
    got = {(p.a, p.b): p for p in pairs}
    assert got[("A", "B")].tau == pytest.approx(1.0) and got[("A", "B")].verdict == "holds"
    assert got[("A", "C")].tau == pytest.approx(-1.0) and got[("A", "C")].swapped == 6
    assert got[("A", "C")].verdict == "does not hold"
    assert got[("A", "D")].tau == pytest.approx(4 / 6) and got[("A", "D")].swapped == 1
    assert got[("A", "D")].verdict == "largely holds"


def test_tau_uses_only_the_methods_both_datasets_have():
    values = pd.DataFrame({"A": [1.0, 2.0, 3.0], "B": [1.0, np.nan, 0.5]}, index=["m1", "m2", "m3"])
    (pair,) = rank_agreement(values, "lower")[1]
    assert pair.n_methods == 2 and pair.tau == pytest.approx(-1.0)


def _blocks(means: list[float], n_seeds: int, n_clips: int, noise: float, seed: int) -> dict[str, StatBlock]:
    """A method's seeds: per-clip LVE sums around ``means[clip]`` (one frame per clip)."""
    rng = np.random.default_rng(seed)
    out = {}
    clips = [f"c{i}" for i in range(n_clips)]
    for s in range(n_seeds):
        vals = np.asarray(means) + rng.normal(scale=noise, size=n_clips)
        out[str(s)] = StatBlock(
            clips, ["S"] * n_clips, [None], {"lve_sum": vals[None], "n_frames": np.ones((1, n_clips))}
        )
    return out


def test_a_clear_winner_ranks_first_always_and_identical_methods_split():
    base = list(np.linspace(1.0, 2.0, 12))
    clear = {
        "good": _blocks([b - 0.5 for b in base], 3, 12, 0.01, 0),
        "bad": _blocks(base, 3, 12, 0.01, 1),
    }
    probs = first_place_probability("lve", clear, n_boot=400)
    assert probs == {"good": 1.0, "bad": 0.0}
    assert "**good** ranks first in 100 %" in first_place_verdict(probs)
    # two methods with the same clip means and seed noise: each first about half the time
    twins = {"x": _blocks(base, 4, 12, 0.05, 2), "y": _blocks(base, 4, 12, 0.05, 3)}
    probs = first_place_probability("lve", twins, n_boot=2000, seed=1)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert 0.25 < probs["x"] < 0.75
    assert first_place_verdict(probs).startswith("No method is reliably first")


def test_higher_is_better_metrics_pick_the_largest():
    base = list(np.linspace(1.0, 2.0, 10))
    blocks = {"hi": _blocks([b + 1 for b in base], 2, 10, 0.01, 0), "lo": _blocks(base, 2, 10, 0.01, 1)}
    for b in blocks.values():  # as a sequence-mean metric whose best is the largest value
        for blk in b.values():
            blk.columns["lip_corr"] = blk.columns["lve_sum"]
    assert first_place_probability("lip_corr", blocks, n_boot=200)["hi"] == 1.0


def _board(dataset: str, lves: dict[str, float]):
    from talkbench.reports import leaderboard as lb

    runs = pd.DataFrame(
        {
            "run_id": [f"{dataset}-{m}" for m in lves],
            "status": "FINISHED",
            "tags.talkbench.method": list(lves),
            "tags.talkbench.config_hash": [f"h-{m}" for m in lves],
            "metrics.test/lve": list(lves.values()),
        }
    )
    return lb.build(runs, dataset, ["lve"])


def test_the_report_section_says_which_rankings_hold():
    from talkbench.reports import stability

    main = _board("a", {"x": 1.0, "y": 2.0, "z": 3.0})
    boards = {
        "a": main,
        "b": _board("b", {"x": 1.5, "y": 2.5, "z": 3.5}),  # same order
        "c": _board("c", {"x": 3.0, "y": 2.0, "z": 1.0}),  # reversed
    }
    text = "\n".join(stability.section(main, {}, boards))
    assert "| x | 1 | 1 | 3 |" in text
    assert "- a vs b: the ranking holds (0 of 3 pairs of methods change order)." in text
    assert "- a vs c: the ranking does not hold (3 of 3 pairs of methods change order)." in text
    assert "| a vs c | -1.00 |" in text
    assert "fewer than two learned methods with per-sequence LVE tables" in text  # no tables given
    alone = "\n".join(stability.section(main, {}, {"a": main}))
    assert "no two datasets or dataset versions share two methods" in alone
