"""bench study power: exact binomial power, known sample sizes, the design effect and exclusions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from talkbench.errors import ConfigError
from talkbench.study.power import binomial_power, rejection_region, study_size


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_rejection_region_is_binomtests(alpha):
    for n in range(1, 70):
        ref = np.array([binomtest(k, n, 0.5).pvalue <= alpha for k in range(n + 1)])
        assert (rejection_region(n, alpha) == ref).all(), n


def test_power_known_values():
    # n = 10: binomtest rejects k <= 1 or k >= 9 at 0.05 (p = 0.0215); at rate 0.9 power is
    # P(X >= 9) + P(X <= 1) = 0.7361 + 0.0000 (binomial pmf sums)
    assert binomial_power(10, 0.9) == pytest.approx(0.9**10 + 10 * 0.9**9 * 0.1 + 10 * 0.9 * 0.1**9 + 0.1**10)
    assert binomial_power(10, 0.5) <= 0.05  # the size of the test at the null
    # the normal approximation asks ~194 answers for 0.6 at 80 %; the exact test a few more
    size = study_size(0.6)
    assert 190 <= size.answers <= 220 and size.power >= 0.8
    assert binomial_power(size.answers - 1, 0.6) < 0.8 or binomial_power(size.answers - 2, 0.6) < 0.8
    assert study_size(0.4).answers == size.answers  # symmetric about 0.5


def test_raters_design_effect_and_exclusion():
    base = study_size(0.7, trials_per_rater=10)
    assert base.raters == -(-base.answers // 10)
    icc = study_size(0.7, trials_per_rater=10, icc=0.1)
    assert icc.answers_with_icc == int(np.ceil(base.answers * 1.9))
    excl = study_size(0.7, trials_per_rater=10, exclusion=0.5)
    assert excl.raters == 2 * base.raters
    assert study_size(0.7, comparisons=3).answers > base.answers  # alpha / 3


def test_bad_options_name_themselves():
    with pytest.raises(ConfigError, match="--rate 0.5"):
        study_size(0.5)
    with pytest.raises(ConfigError, match="--icc"):
        study_size(0.6, icc=1.0)


def test_the_command_prints_answers_and_raters():
    from typer.testing import CliRunner

    from talkbench.cli import app

    out = CliRunner().invoke(app, ["study", "power", "--rate", "0.7", "--trials-per-rater", "10"])
    assert out.exit_code == 0, out.output
    n = study_size(0.7, trials_per_rater=10)
    assert f"answers per comparison: {n.answers}" in out.stdout and f"raters: {n.raters}" in out.stdout
