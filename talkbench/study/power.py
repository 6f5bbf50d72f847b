"""How many raters and trials a 2AFC study needs: the exact power of the two-sided binomial test
against 0.5 that ``bench study analyze`` runs, for a true preference rate.

- power(n) = P(the test rejects at ``alpha`` | n answers, true rate p): the rejection region of
  ``scipy.stats.binomtest`` (the analysis's test), its probability summed under Binomial(n, p);
- the trials needed are the smallest n whose power reaches the target; exact power is not monotone
  in n (a saw-tooth), so the n returned is also the start of a run of 10 n's that all reach it;
- ``comparisons``: Bonferroni's alpha / k, a conservative bound for the Holm correction the
  analysis applies; ``icc``: answers of one rater are correlated, so n grows by the design effect
  1 + (m - 1) icc for m trials per rater; ``exclusion``: the share of raters catch trials remove.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from talkbench.errors import ConfigError

MAX_TRIALS = 100_000
STABLE_RUN = 10


def rejection_region(n: int, alpha: float) -> np.ndarray:
    """k = 0..n where the two-sided exact binomial test against 0.5 rejects (p <= alpha). Under the
    symmetric null, scipy's binomtest p-value is min(1, 2 min(P(X <= k), P(X >= k))): computed for all k
    at once (tests/test_study_power.py checks it against binomtest)."""
    k = np.arange(n + 1)
    p = np.minimum(1.0, 2 * np.minimum(binom.cdf(k, n, 0.5), binom.sf(k - 1, n, 0.5)))
    return p <= alpha * (1 + 1e-12)  # binomtest's own relative tolerance on ties


def binomial_power(n: int, rate: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided binomial test against 0.5 with n answers at true ``rate``."""
    k = np.arange(n + 1)
    return float(binom.pmf(k, n, rate)[rejection_region(n, alpha)].sum())


@dataclass(frozen=True)
class StudySize:
    answers: int  # independent answers per comparison and criterion
    answers_with_icc: int  # after the design effect of correlated answers within a rater
    raters: int  # recruited (before catch-trial exclusion)
    power: float  # exact power at ``answers``
    alpha: float  # per comparison (after the Bonferroni split)


def study_size(
    rate: float,
    power: float = 0.8,
    alpha: float = 0.05,
    trials_per_rater: int = 20,
    comparisons: int = 1,
    icc: float = 0.0,
    exclusion: float = 0.0,
) -> StudySize:
    """Answers and raters needed to detect a preference ``rate`` (vs 0.5) with ``power``."""
    checks = (
        (0 < rate < 1 and rate != 0.5, f"--rate {rate}: expected a preference rate in (0, 1) other than 0.5"),
        (0 < power < 1, f"--power {power}: expected a value in (0, 1)"),
        (0 < alpha < 1, f"--alpha {alpha}: expected a value in (0, 1)"),
        (trials_per_rater >= 1, f"--trials-per-rater {trials_per_rater}: expected at least 1"),
        (comparisons >= 1, f"--comparisons {comparisons}: expected at least 1"),
        (0 <= icc < 1, f"--icc {icc}: expected a value in [0, 1)"),
        (0 <= exclusion < 1, f"--exclusion {exclusion}: expected a share in [0, 1)"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    a = alpha / comparisons
    n, run = 1, 0
    while n <= MAX_TRIALS:
        if binomial_power(n, rate, a) >= power:
            run += 1
            if run == STABLE_RUN:
                break
        else:
            run = 0
        n += 1
    else:
        raise ConfigError(f"--rate {rate}: more than {MAX_TRIALS} answers needed; a rate that close to 0.5 "
                          "cannot be detected by a study")
    needed = n - STABLE_RUN + 1
    effect = 1 + (trials_per_rater - 1) * icc
    with_icc = math.ceil(needed * effect)
    raters = math.ceil(math.ceil(with_icc / trials_per_rater) / (1 - exclusion))
    return StudySize(needed, with_icc, raters, binomial_power(needed, rate, a), a)
