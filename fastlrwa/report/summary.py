"""Table-1 rows of a set of runs: one per run, one per setting run with several seeds.

Runs are grouped into *blocks* like the paper's table: one per (dataset, teacher, student), the
teacher identified by its file's hash where config.json records it, since runs distilled from
different teachers are not comparable. A *setting* is a block, a method, the rest of the recorded
config (``run_log.settings``: e.g. two generator learning rates of one sweep are two settings) and
the number of logged epochs E: runs of one setting differ only in their seed, so their cells can be
averaged. Keeping E in the key stops a run that stopped early from being averaged with finished
ones (its percentiles cover different epochs).

Within a block, methods come in the order they first appear among the runs given, then each of a
method's settings in that order, its runs followed by its aggregated row. Settings of a block that
differ in more than the method are labelled with the config keys on which they differ.

A run with no test data has no accuracy (``stats`` None): its row keeps its place, with the student-teacher
agreement on its held-out generated samples, which every run logging it shows (``heldout``, a fraction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastlrwa.report.table import AggregateStats, MeanStd, RunStats, aggregate_runs, mean_and_sample_std, run_stats
from fastlrwa.run_log.metrics_file import RunRecord
from fastlrwa.run_log.settings import Setting, differing_keys, setting_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    """What the runs of one table block (one column of Figure 4) share."""

    dataset: str
    teacher: str | None
    teacher_sha256: str | None
    student: str | None

    @classmethod
    def of(cls, record: RunRecord) -> Block:
        return cls(record.dataset, record.teacher, record.teacher_sha256, record.student)

    @property
    def title(self) -> str:
        """E.g. "cifar10 · teacher resnet34 · student resnet18"; unknown models are left out."""
        parts = [self.dataset]
        if self.teacher is not None:
            parts.append(f"teacher {self.teacher}")
        if self.student is not None:
            parts.append(f"student {self.student}")
        return " · ".join(parts)


@dataclass(frozen=True)
class RunSummary:
    """One run and its Table-1 cells (None where its accuracy was not measured)."""

    record: RunRecord
    stats: RunStats | None

    @property
    def heldout(self) -> float | None:
        return self.record.final_heldout_agreement

    @property
    def setting(self) -> Setting:
        return setting_of(self.record.config)


@dataclass(frozen=True)
class AggregateSummary:
    """Several seeds of one setting and the mean and sample std of their cells (None where their accuracy was not
    measured) and of their last held-out agreement (None where one of them logged none)."""

    block: Block
    method: str
    setting: Setting
    runs: list[RunSummary]
    stats: AggregateStats | None
    heldout: MeanStd | None = None

    @property
    def n_epochs(self) -> int:
        return self.runs[0].record.epochs_logged

    @property
    def complete(self) -> bool:
        return all(run.record.complete for run in self.runs)


@dataclass(frozen=True)
class TableGroup:
    """The rows of one block of the table, in display order, and the config keys that tell its settings apart."""

    block: Block
    rows: list[RunSummary | AggregateSummary]
    cell_keys: list[str]

    @property
    def runs(self) -> list[RunSummary]:
        return [row for row in self.rows if isinstance(row, RunSummary)]


def runs_label(seeds: Sequence[int]) -> str:
    """``3 seeds``, or ``2 runs, 1 seed`` when some runs share a seed (their spread is not one over seeds)."""
    distinct = len(set(seeds))
    seed_word = "seed" if distinct == 1 else "seeds"
    return f"{distinct} {seed_word}" if distinct == len(seeds) else f"{len(seeds)} runs, {distinct} {seed_word}"


def summarise_runs(records: Sequence[RunRecord]) -> tuple[list[RunSummary], list[AggregateSummary]]:
    """Cells of every run, and the aggregate of every setting with at least two runs.

    Every record needs at least one logged epoch.
    """
    runs = [
        RunSummary(record, run_stats(record.accuracies) if record.accuracy_measured else None) for record in records
    ]
    by_setting: dict[tuple[Block, str, Setting, int], list[RunSummary]] = {}
    for run in runs:
        key = (Block.of(run.record), run.record.method, run.setting, run.record.epochs_logged)
        by_setting.setdefault(key, []).append(run)
    aggregates = []
    for (block, method, setting, _), members in by_setting.items():
        if len(members) < 2:
            continue
        seeds = [run.record.seed for run in members]
        if len(set(seeds)) < len(seeds):
            logger.warning(
                "%s on %s: several runs share a seed (%s); their spread is not a spread over seeds",
                method,
                block.title,
                ", ".join(map(str, seeds)),
            )
        stats = [run.stats for run in members if run.stats is not None]
        heldout = [run.heldout for run in members if run.heldout is not None]
        aggregates.append(
            AggregateSummary(
                block,
                method,
                setting,
                members,
                aggregate_runs(stats) if len(stats) == len(members) else None,
                mean_and_sample_std(heldout) if len(heldout) == len(members) else None,
            )
        )
    return runs, aggregates


def table_groups(runs: Sequence[RunSummary], aggregates: Sequence[AggregateSummary]) -> list[TableGroup]:
    """Runs and aggregates arranged into the table's blocks."""
    blocks: dict[Block, dict[str, dict[Setting, list[RunSummary | AggregateSummary]]]] = {}
    for run in runs:
        methods = blocks.setdefault(Block.of(run.record), {})
        methods.setdefault(run.record.method, {}).setdefault(run.setting, []).append(run)
    for aggregate in aggregates:
        blocks[aggregate.block][aggregate.method][aggregate.setting].append(aggregate)
    groups = []
    for block, methods in blocks.items():
        rows = [row for settings in methods.values() for members in settings.values() for row in members]
        groups.append(TableGroup(block, rows, differing_keys(s for settings in methods.values() for s in settings)))
    return groups
