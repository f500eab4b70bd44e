"""The two-sample intervals of fastlrwa.report.intervals against their formulas written out here.

Welch: the interval computed by hand with scipy.stats.t (and checked against scipy's own Welch test).
Bootstrap: seeded, so repeatable; its coverage of a known difference on synthetic normal data, and its
agreement with the normal-theory interval when the samples are large.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from fastlrwa.report.intervals import Interval, bootstrap_interval, difference, welch_interval


@pytest.fixture
def rng() -> np.random.Generator:
    seed = random.SystemRandom().randrange(2**32)
    print(f"random seed {seed}")
    return np.random.default_rng(seed)


def _welch_by_hand(a: list[float], b: list[float], confidence: float) -> tuple[float, float, float]:
    n_a, n_b = len(a), len(b)
    mean_a, mean_b = sum(a) / n_a, sum(b) / n_b
    var_a = sum((x - mean_a) ** 2 for x in a) / (n_a - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (n_b - 1)
    se = math.sqrt(var_a / n_a + var_b / n_b)
    df = (var_a / n_a + var_b / n_b) ** 2 / ((var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, df) * se
    return mean_a - mean_b - half, mean_a - mean_b + half, df


@pytest.mark.parametrize("sizes", [(2, 2), (3, 7), (5, 5), (11, 4)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_welch_interval_is_the_formula(sizes, confidence, rng) -> None:
    a = list(rng.normal(80.0, rng.uniform(0.2, 3.0), sizes[0]))
    b = list(rng.normal(78.0, rng.uniform(0.2, 3.0), sizes[1]))
    interval, df = welch_interval(a, b, confidence)
    low, high, expected_df = _welch_by_hand(a, b, confidence)
    assert (interval.low, interval.high, df) == pytest.approx((low, high, expected_df), rel=1e-12)
    scipy_interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    assert (interval.low, interval.high) == pytest.approx((scipy_interval.low, scipy_interval.high), rel=1e-10)


def test_welch_of_two_constant_samples_is_the_point() -> None:
    interval, df = welch_interval([81.5, 81.5, 81.5], [80.25, 80.25])
    assert (interval.low, interval.high) == (1.25, 1.25) and math.isnan(df)


def test_bootstrap_is_seeded_and_brackets_the_estimate(rng) -> None:
    a, b = list(rng.normal(70.0, 2.0, 6)), list(rng.normal(69.0, 1.0, 9))
    first = bootstrap_interval(a, b, resamples=4000, seed=3)
    assert bootstrap_interval(a, b, resamples=4000, seed=3) == first
    assert bootstrap_interval(a, b, resamples=4000, seed=4) != first
    estimate = np.mean(a) - np.mean(b)
    assert first.low < estimate < first.high
    # Every resampled difference lies between the extreme possible ones.
    assert min(a) - max(b) <= first.low and first.high <= max(a) - min(b)


def test_bootstrap_matches_the_normal_interval_for_large_samples(rng) -> None:
    a, b = rng.normal(50.0, 4.0, 400), rng.normal(47.0, 2.0, 300)
    interval = bootstrap_interval(list(a), list(b), resamples=20000, seed=int(rng.integers(1 << 31)))
    # The bootstrap distribution of a mean has the population (ddof = 0) variance over n.
    se = math.sqrt(a.var() / a.size + b.var() / b.size)
    z = stats.norm.ppf(0.975)
    estimate = a.mean() - b.mean()
    assert interval.low == pytest.approx(estimate - z * se, abs=0.08 * se)
    assert interval.high == pytest.approx(estimate + z * se, abs=0.08 * se)


def test_coverage_of_a_known_difference() -> None:
    """Repeated experiments with true difference 2.5: Welch covers it ~95 % of the time, the bootstrap
    (n = 25 a side, where it is fair) close to that; both exclude 0 most of the time at this effect size."""
    rng = np.random.default_rng(20251130)
    trials, covered_welch, covered_boot, excluded_zero = 300, 0, 0, 0
    for trial in range(trials):
        a, b = rng.normal(62.5, 2.0, 25), rng.normal(60.0, 3.0, 25)
        welch, _ = welch_interval(list(a), list(b))
        boot = bootstrap_interval(list(a), list(b), resamples=2000, seed=trial)
        covered_welch += welch.low <= 2.5 <= welch.high
        covered_boot += boot.low <= 2.5 <= boot.high
        excluded_zero += not welch.contains_zero
    # Binomial(300, 0.95) stays within [0.91, 0.985] with probability > 0.999.
    assert 0.91 <= covered_welch / trials <= 0.985
    assert 0.89 <= covered_boot / trials <= 0.985
    assert excluded_zero / trials > 0.8  # power at 3.5 standard errors


def test_interval_sign_and_verdicts() -> None:
    assert Interval(-0.1, 2.0).contains_zero and Interval(-0.1, 2.0).sign == 0
    assert Interval(0.3, 2.0).sign == 1 and Interval(-3.0, -0.2).sign == -1
    clear = difference([80.1, 80.5, 80.3, 80.2], [75.0, 75.4, 74.9, 75.3])
    assert clear.verdict(higher="higher", lower="lower") == "higher"
    assert difference([75.0, 75.4, 74.9], [80.1, 80.5, 80.3]).verdict(higher="up", lower="down") == "down"
    overlap = difference([80.0, 84.0, 78.0], [81.0, 79.0, 83.0])
    assert overlap.verdict(higher="h", lower="l") == "cannot be told apart at 3 vs 3 seeds"
    assert (overlap.n_a, overlap.n_b) == (3, 3) and overlap.estimate == pytest.approx(-1 / 3, rel=1e-12)


def test_verdict_names_the_interval_that_contains_zero() -> None:
    # Two seeds a side: Welch (1 degree of freedom) is wide, the bootstrap is narrow.
    result = difference([80.0, 81.0], [78.0, 79.5])
    assert result.welch.contains_zero and not result.bootstrap.contains_zero
    assert result.verdict(higher="h", lower="l") == (
        "unclear at 2 vs 2 seeds: the Welch interval contains 0, the bootstrap interval does not"
    )


@pytest.mark.parametrize("bad", [[1.0], [], [1.0, float("nan")]])
def test_samples_need_two_finite_values(bad) -> None:
    with pytest.raises(ValueError):
        difference(bad, [1.0, 2.0])
