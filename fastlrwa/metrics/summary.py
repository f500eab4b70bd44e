"""Table-1 rows of a set of runs: one per run, one per setting run with several seeds.

A *setting* is (dataset, student, method, number of logged epochs E): runs of one setting differ
only in their seed, so their cells can be averaged. Keeping E in the key stops a run that stopped
early from being averaged with finished ones (its percentiles cover different epochs).

Rows are grouped like the paper's table: one group per (dataset, student), methods in the order
they first appear among the runs given, each method's runs followed by its aggregated row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastlrwa.metrics.run_log import RunRecord
from fastlrwa.metrics.table import AggregateStats, RunStats, aggregate_runs, run_stats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    """One run and its Table-1 cells."""

    record: RunRecord
    stats: RunStats


@dataclass(frozen=True)
class AggregateSummary:
    """Several seeds of one setting and the mean and sample std of their cells."""

    method: str
    dataset: str
    student: str | None
    runs: list[RunSummary]
    stats: AggregateStats

    @property
    def n_epochs(self) -> int:
        return self.runs[0].stats.n_epochs

    @property
    def complete(self) -> bool:
        return all(run.record.complete for run in self.runs)


@dataclass(frozen=True)
class TableGroup:
    """The rows of one (dataset, student) block of the table, in display order."""

    dataset: str
    student: str | None
    rows: list[RunSummary | AggregateSummary]

    @property
    def runs(self) -> list[RunSummary]:
        return [row for row in self.rows if isinstance(row, RunSummary)]


def _setting(record: RunRecord) -> tuple[str, str | None, str, int]:
    return record.dataset, record.student, record.method, len(record.accuracies)


def summarise_runs(records: Sequence[RunRecord]) -> tuple[list[RunSummary], list[AggregateSummary]]:
    """Cells of every run, and the aggregate of every setting with at least two runs.

    Every record needs at least one logged epoch.
    """
    runs = [RunSummary(record, run_stats(record.accuracies)) for record in records]
    by_setting: dict[tuple[str, str | None, str, int], list[RunSummary]] = {}
    for run in runs:
        by_setting.setdefault(_setting(run.record), []).append(run)
    aggregates = []
    for (dataset, student, method, _), members in by_setting.items():
        if len(members) < 2:
            continue
        seeds = [run.record.seed for run in members]
        if len(set(seeds)) < len(seeds):
            logger.warning("%s on %s: several runs share a seed (%s); the spread over them is not a spread "
                           "over seeds", method, dataset, ", ".join(map(str, seeds)))
        aggregates.append(AggregateSummary(method, dataset, student, members,
                                           aggregate_runs([run.stats for run in members])))
    return runs, aggregates


def table_groups(runs: Sequence[RunSummary], aggregates: Sequence[AggregateSummary]) -> list[TableGroup]:
    """Runs and aggregates arranged into the table's (dataset, student) blocks."""
    methods: dict[tuple[str, str | None], dict[str, list[RunSummary | AggregateSummary]]] = {}
    for run in runs:
        block = methods.setdefault((run.record.dataset, run.record.student), {})
        block.setdefault(run.record.method, []).append(run)
    for aggregate in aggregates:
        methods[(aggregate.dataset, aggregate.student)][aggregate.method].append(aggregate)
    return [
        TableGroup(dataset, student, [row for rows in block.values() for row in rows])
        for (dataset, student), block in methods.items()
    ]
