"""Table-1 statistics against the paper's definition written out here with plain Python."""

from __future__ import annotations

import random
import statistics
from fractions import Fraction

import pytest

from fastlrwa.report.table import (
    PERCENTILES,
    acc_max,
    aggregate_runs,
    cumulative_mean,
    epochs_past_percentile,
    percentile_stats,
    run_stats,
)


def _accuracies(rng: random.Random, n_epochs: int) -> list[float]:
    return [rng.uniform(5.0, 99.0) for _ in range(n_epochs)]


# First epoch past each percentile, worked out by hand from k > n * E / 100:
# E = 7: n*E/100 = 0, 1.4, 2.8, 4.2, 5.6; E = 13: 0, 2.6, 5.2, 7.8, 10.4;
# E = 10 (boundaries land on integers, which are excluded): 0, 2, 4, 6, 8; E = 1: 0, .2, .4, .6, .8.
HAND_FIRST_EPOCH = {
    7: {0: 1, 20: 2, 40: 3, 60: 5, 80: 6},
    13: {0: 1, 20: 3, 40: 6, 60: 8, 80: 11},
    10: {0: 1, 20: 3, 40: 5, 60: 7, 80: 9},
    1: {0: 1, 20: 1, 40: 1, 60: 1, 80: 1},
}


@pytest.mark.parametrize("n_epochs", sorted(HAND_FIRST_EPOCH))
def test_epochs_past_percentile_matches_hand_computation(n_epochs: int) -> None:
    for percentile, first in HAND_FIRST_EPOCH[n_epochs].items():
        assert list(epochs_past_percentile(n_epochs, percentile)) == list(range(first, n_epochs + 1))


@pytest.mark.parametrize("n_epochs", [1, 7, 10, 13, 37, 200])
def test_percentile_stats_match_definition(rng: random.Random, n_epochs: int) -> None:
    accuracies = _accuracies(rng, n_epochs)
    stats = percentile_stats(accuracies)
    assert sorted(stats) == list(PERCENTILES)
    for n in PERCENTILES:
        selected = [a for k, a in enumerate(accuracies, start=1) if k > n * n_epochs / 100]
        assert stats[n].n_epochs == len(selected)
        assert stats[n].mean == pytest.approx(statistics.fmean(selected), rel=1e-13)
        assert stats[n].var == pytest.approx(statistics.pvariance(selected), rel=1e-11, abs=1e-11)


def test_percentile_stats_hand_selected_epochs(rng: random.Random) -> None:
    accuracies = _accuracies(rng, 13)
    stats = percentile_stats(accuracies, percentiles=(40,))
    # Epochs 6..13 (k > 5.2), i.e. indices 5..12.
    selected = accuracies[5:]
    mean = sum(selected) / 8
    assert stats[40].mean == pytest.approx(mean, rel=1e-13)
    assert stats[40].var == pytest.approx(sum((a - mean) ** 2 for a in selected) / 8, rel=1e-11)


def test_variance_is_population_and_keeps_digits_near_a_constant(rng: random.Random) -> None:
    # Accuracies that barely move at 95%: a one-pass E[x^2] - E[x]^2 would lose most digits here.
    accuracies = [95.0 + rng.uniform(-1e-4, 1e-4) for _ in range(23)]
    stats = percentile_stats(accuracies)
    for n in PERCENTILES:
        selected = [a for k, a in enumerate(accuracies, start=1) if k > n * 23 / 100]
        exact = statistics.pvariance([Fraction(a) for a in selected])
        assert stats[n].var == pytest.approx(float(exact), rel=1e-9)
        assert stats[n].var != pytest.approx(statistics.variance(selected), rel=1e-3)


def test_acc_max_and_cumulative_mean(rng: random.Random) -> None:
    accuracies = _accuracies(rng, 17)
    assert acc_max(accuracies) == max(accuracies)
    expected = []
    for k in range(1, len(accuracies) + 1):
        expected.append(statistics.fmean(accuracies[:k]))
    assert cumulative_mean(accuracies) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("n_runs", [2, 3, 5])
def test_aggregate_runs_is_mean_and_sample_std(rng: random.Random, n_runs: int) -> None:
    per_run = [_accuracies(rng, 11) for _ in range(n_runs)]
    aggregate = aggregate_runs([run_stats(accuracies) for accuracies in per_run])
    assert aggregate.n_runs == n_runs
    maxima = [max(accuracies) for accuracies in per_run]
    assert aggregate.acc_max.mean == pytest.approx(statistics.mean(maxima), rel=1e-13)
    assert aggregate.acc_max.std == pytest.approx(statistics.stdev(maxima), rel=1e-10)
    for n in PERCENTILES:
        selections = [[a for k, a in enumerate(acc, start=1) if k > n * 11 / 100] for acc in per_run]
        means = [statistics.fmean(selected) for selected in selections]
        variances = [statistics.pvariance(selected) for selected in selections]
        cell = aggregate.percentiles[n]
        assert cell.mean.mean == pytest.approx(statistics.mean(means), rel=1e-12)
        assert cell.mean.std == pytest.approx(statistics.stdev(means), rel=1e-9)
        assert cell.var.mean == pytest.approx(statistics.mean(variances), rel=1e-10)
        assert cell.var.std == pytest.approx(statistics.stdev(variances), rel=1e-8)


def test_bad_arguments_raise(rng: random.Random) -> None:
    with pytest.raises(ValueError, match="at least 2 runs"):
        aggregate_runs([run_stats(_accuracies(rng, 5))])
    with pytest.raises(ValueError, match="same percentiles"):
        aggregate_runs([run_stats(_accuracies(rng, 5)), run_stats(_accuracies(rng, 5), percentiles=(0, 50))])
    with pytest.raises(ValueError, match="percentile"):
        percentile_stats(_accuracies(rng, 5), percentiles=(100,))
    with pytest.raises(ValueError, match="at least one epoch"):
        percentile_stats([])
