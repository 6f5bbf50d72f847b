"""User-study statistics against scipy and hand-worked values."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from talkbench.errors import TalkbenchError
from talkbench.study.analysis import analyze, binomial_summary, bradley_terry, catch_failures, holm


def test_binomial_and_wilson_match_the_worked_example():
    rate, p, lo, hi = binomial_summary(68, 100)
    assert rate == 0.68
    assert p == pytest.approx(binomtest(68, 100).pvalue)
    assert p == pytest.approx(4.1e-4, abs=0.05e-4)
    # Wilson by hand: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, ph = 1.959963984540054, 100, 0.68
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (round(lo, 3), round(hi, 3)) == (0.583, 0.763)


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step
    assert holm([0.2, 0.01]) == pytest.approx([0.2, 0.02])


def test_bradley_terry_recovers_the_order_of_simulated_strengths():
    rng = np.random.default_rng(0)
    true = np.array([1.0, 0.0, -1.0])
    wins = np.zeros((3, 3))
    for _ in range(3000):
        i, j = rng.choice(3, 2, replace=False)
        p = 1 / (1 + np.exp(true[j] - true[i]))
        if rng.random() < p:
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    est = bradley_terry(wins)
    assert np.argsort(-est).tolist() == [0, 1, 2]
    assert est - est.mean() == pytest.approx(true - true.mean(), abs=0.15)


def _answers(rows):
    return pd.DataFrame(
        rows, columns=["rater", "trial", "criterion", "choice", "left", "right", "catch", "expected"]
    )


def test_catch_failures_are_excluded_and_counted():
    rows = []
    for r in ("good", "bad"):
        rows.append((r, "c1", "lipsync", "left", "ground-truth", "catch:static", True, "left"))
        rows.append(
            (
                r,
                "c2",
                "lipsync",
                "right" if r == "good" else "left",
                "catch:static",
                "ground-truth",
                True,
                "right",
            )
        )
        for k in range(10):
            rows.append((r, f"t{k}", "lipsync", "left", "A", "B", False, None))
    df = _answers(rows)
    assert catch_failures(df) == {"bad"}
    result = analyze(df)
    assert result["excluded_raters"] == ["bad"]
    pair = result["pairs"].iloc[0]
    assert (pair.method_a, pair.method_b, pair.wins_a, pair.n) == ("A", "B", 10, 10)
    assert pair.p_value == pytest.approx(binomtest(10, 10).pvalue)


def test_analysis_counts_wins_whatever_the_side_and_scores_three_methods():
    rows = []
    for k in range(20):
        # A beats B on both sides; C loses to both
        rows.append(
            (
                "r",
                f"a{k}",
                "realism",
                "left" if k % 2 else "right",
                *(("A", "B") if k % 2 else ("B", "A")),
                False,
                None,
            )
        )
        rows.append(("r", f"b{k}", "realism", "right", "C", "A", False, None))
        rows.append(("r", f"c{k}", "realism", "left", "B", "C", False, None))
    result = analyze(_answers(rows))
    ab = result["pairs"].set_index(["method_a", "method_b"]).loc[("A", "B")]
    assert ab.wins_a == 20 and ab.n == 20
    bt = result["bradley_terry"]["realism"]
    assert bt["A"] > bt["B"] > bt["C"]


def test_bad_answer_tables_are_rejected():
    with pytest.raises(TalkbenchError, match="lack columns"):
        analyze(pd.DataFrame({"rater": ["r"]}))
