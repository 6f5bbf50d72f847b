"""Metric/preference agreement per clip (study/correlation.py) on constructed answers with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talkbench.study.correlation import clip_preferences, metric_agreement, per_clip_values, spearman_ci


def _tables(n_clips: int):
    """A is better than B on clip i by i (LVE sums), one frame per clip, two conditions for B."""
    clips = [f"c{i}" for i in range(n_clips)]
    a = pd.DataFrame({"clip": clips, "lve_sum": [10.0] * n_clips, "n_frames": 1.0, "lip_corr": 0.5})
    worse = [10.0 + i for i in range(n_clips)] * 2
    b = pd.DataFrame({"clip": clips * 2, "lve_sum": worse, "n_frames": 1.0, "lip_corr": 0.5})
    return {"A": a, "B": b}


def _answers(n_clips: int, agree: bool) -> pd.DataFrame:
    """On clip i, i of n_clips answers prefer A (or the reverse when not ``agree``)."""
    rows = []
    for i in range(n_clips):
        wins = i if agree else n_clips - 1 - i
        for k in range(n_clips):
            winner, loser = ("A", "B") if k < wins else ("B", "A")
            rows.append({"criterion": "lipsync", "clip": f"c{i}", "winner": winner, "loser": loser})
    return pd.DataFrame(rows)


def test_clip_preferences_and_clip_values():
    prefs = clip_preferences(_answers(4, True))
    assert prefs["pref_a"].tolist() == [0.0, 0.25, 0.5, 0.75] and (prefs["n"] == 4).all()
    values = per_clip_values(_tables(4)["B"], "lve")
    assert values.tolist() == [10.0, 11.0, 12.0, 13.0]  # frame-pooled over B's two conditions


@pytest.mark.parametrize("agree, sign", [(True, 1.0), (False, -1.0)])
def test_a_metric_that_orders_the_clips_like_the_raters_has_rho_one(agree, sign):
    prefs = clip_preferences(_answers(10, agree))
    out = metric_agreement(prefs, _tables(10), ["lve", "lip_corr"], n_boot=300)
    lve = out.set_index("metric").loc["lve"]
    assert lve["rho"] == pytest.approx(sign) and lve["n_items"] == 10
    assert lve["ci_low"] == pytest.approx(sign) and lve["ci_high"] == pytest.approx(sign)
    assert np.isnan(out.set_index("metric").loc["lip_corr", "rho"])  # equal on every clip: undefined


def test_spearman_ci_covers_a_noisy_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=1.0, size=60)
    rho, lo, hi = spearman_ci(x, y, n_boot=1000)
    assert lo < rho < hi and 0.4 < rho < 0.9 and hi - lo < 0.6
