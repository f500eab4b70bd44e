"""Table-1 statistics of a run's per-epoch test accuracies (pure functions, no I/O).

The paper (Section 4.1) reports, for each epoch percentile n, the mean and variance of the
student's test accuracy over "all the epochs greater than the n/100-th of the total number of
training epochs": with E epochs counted from 1, epoch k is taken when k > n * E / 100. The first
such epoch is computed in integers, floor(n * E / 100) + 1, so that a fractional n * E / 100 never
meets a rounding error.
Variances are population variances, in %^2, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES: tuple[int, ...] = (0, 20, 40, 60, 80)


@dataclass(frozen=True)
class PercentileStat:
    """Mean and population variance of the accuracies of the epochs past one percentile."""

    mean: float
    var: float
    n_epochs: int


@dataclass(frozen=True)
class RunStats:
    """The Table-1 cells of one run: Acc_max and the statistics past each percentile."""

    n_epochs: int
    acc_max: float
    percentiles: dict[int, PercentileStat]


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof = 1) of one cell over several runs."""

    mean: float
    std: float


@dataclass(frozen=True)
class AggregatePercentile:
    """Across-run spread of one percentile's mean and variance."""

    mean: MeanStd
    var: MeanStd


@dataclass(frozen=True)
class AggregateStats:
    """The Table-1 cells of several runs (seeds) of one setting, as mean and sample std."""

    n_runs: int
    acc_max: MeanStd
    percentiles: dict[int, AggregatePercentile]


def _require_accuracies(accuracies: Sequence[float]) -> None:
    if len(accuracies) == 0:
        raise ValueError("need the accuracy of at least one epoch")


def _mean_and_pvariance(values: Sequence[float]) -> tuple[float, float]:
    # Two-pass with exactly rounded sums: accuracies near 90% with a variance near 0.01 would
    # lose digits in a one-pass E[x^2] - E[x]^2.
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) ** 2 for v in values) / len(values)


def epochs_past_percentile(n_epochs: int, percentile: int) -> range:
    """The epochs k (from 1) of an E-epoch run with k > percentile * E / 100."""
    if not 0 <= percentile < 100:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    first = percentile * n_epochs // 100 + 1
    return range(first, n_epochs + 1)


def percentile_stats(
    accuracies: Sequence[float], percentiles: Sequence[int] = PERCENTILES
) -> dict[int, PercentileStat]:
    """Mean and population variance of the accuracies past each percentile.

    ``accuracies[k - 1]`` is the test accuracy (%) after epoch k; E = ``len(accuracies)``.
    """
    _require_accuracies(accuracies)
    stats = {}
    for percentile in percentiles:
        epochs = epochs_past_percentile(len(accuracies), percentile)
        mean, var = _mean_and_pvariance([accuracies[k - 1] for k in epochs])
        stats[percentile] = PercentileStat(mean=mean, var=var, n_epochs=len(epochs))
    return stats


def acc_max(accuracies: Sequence[float]) -> float:
    """The best test accuracy over the whole run (Table 1's last column)."""
    _require_accuracies(accuracies)
    return max(accuracies)


def cumulative_mean(accuracies: Sequence[float]) -> list[float]:
    """Mean accuracy of epochs 1..k for every k (Figure 4's bottom row)."""
    means = []
    total = 0.0
    for k, accuracy in enumerate(accuracies, start=1):
        total += accuracy
        means.append(total / k)
    return means


def run_stats(accuracies: Sequence[float], percentiles: Sequence[int] = PERCENTILES) -> RunStats:
    """All Table-1 cells of one run."""
    return RunStats(
        n_epochs=len(accuracies),
        acc_max=acc_max(accuracies),
        percentiles=percentile_stats(accuracies, percentiles),
    )


def mean_and_sample_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample standard deviation (ddof = 1) of at least two values."""
    mean = math.fsum(values) / len(values)
    return MeanStd(mean=mean, std=math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)))


def aggregate_runs(runs: Sequence[RunStats]) -> AggregateStats:
    """Mean and sample standard deviation (ddof = 1) of every cell over runs of one setting.

    Sample std because the seeds are a sample of the seeds one could have drawn; it needs at least
    two runs, all with the same percentiles.
    """
    if len(runs) < 2:
        raise ValueError(f"aggregating needs at least 2 runs, got {len(runs)}")
    percentiles = list(runs[0].percentiles)
    if any(list(run.percentiles) != percentiles for run in runs):
        raise ValueError("every run must have the same percentiles")
    return AggregateStats(
        n_runs=len(runs),
        acc_max=mean_and_sample_std([run.acc_max for run in runs]),
        percentiles={
            p: AggregatePercentile(
                mean=mean_and_sample_std([run.percentiles[p].mean for run in runs]),
                var=mean_and_sample_std([run.percentiles[p].var for run in runs]),
            )
            for p in percentiles
        },
    )
