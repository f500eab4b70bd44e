"""The report of ``fastlrwa report`` and ``fastlrwa sweep``: Table 1 of the paper for a set of runs, and the
differences between settings over seeds with their confidence intervals (``report.comparisons``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.report.comparisons import Comparison, build_comparisons
from fastlrwa.report.diagnostics import diagnostics_document, render_diagnostics
from fastlrwa.report.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from fastlrwa.report.render import render_csv, render_markdown, report_document
from fastlrwa.report.render_compare import (
    comparisons_document,
    render_comparisons_csv,
    render_comparisons_markdown,
)
from fastlrwa.report.summary import AggregateSummary, RunSummary, summarise_runs, table_groups
from fastlrwa.run_log.metrics_file import METRICS_FILE, RunRecord, read_run


@dataclass(frozen=True)
class Report:
    """Everything the report computed: the rows, the comparisons, the texts and the ``--json`` document."""

    runs: list[RunSummary]
    aggregates: list[AggregateSummary]
    comparisons: list[Comparison]
    not_compared: list[str]
    markdown: str
    csv: str
    compare_csv: str
    document: dict[str, Any]


def read_runs(run_dirs: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """The runs of ``run_dirs`` (each once), every one with at least one logged epoch."""
    if not run_dirs:
        raise ConfigError("no run directory given; pass one or more --out directories of `fastlrwa train`")
    # The same run given twice (overlapping shell globs) would count twice in its aggregate.
    first_given: dict[Path, str | os.PathLike] = {}
    for run_dir in run_dirs:
        first_given.setdefault(Path(run_dir).resolve(), run_dir)
    records = [read_run(run_dir) for run_dir in first_given.values()]
    for record in records:
        if not record.metrics:
            raise UserFacingError(
                f"{record.path} has not finished an epoch yet ({METRICS_FILE} is empty); "
                f"report it after its first epoch or leave it out"
            )
    return records


def build_report(
    records: Sequence[RunRecord],
    *,
    compare: str | None = None,
    equal_time: bool = False,
    time_budget_s: float | None = None,
) -> Report:
    """Table 1 of ``records`` and the differences between its settings (see ``report.comparisons``).

    ``compare`` names the baseline (a method and/or ``key=value``); without it, settings that differ
    only in their method are compared pairwise. ``equal_time`` adds the comparison at equal training
    time, cut at ``time_budget_s`` (default: the shortest run's total training time).
    """
    runs, aggregates = summarise_runs(records)
    groups = table_groups(runs, aggregates)
    cell_keys = {group.block: group.cell_keys for group in groups}
    # Runs with no test data have no accuracy to compare.
    comparisons, notes = build_comparisons(
        [aggregate for aggregate in aggregates if aggregate.stats is not None],
        baseline=compare,
        equal_time=equal_time,
        time_budget_s=time_budget_s,
    )
    compare_markdown = render_comparisons_markdown(
        comparisons, notes, cell_keys, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED
    )
    document = {
        **report_document(runs, aggregates, cell_keys),
        **comparisons_document(comparisons, notes, cell_keys),
        "diagnostics": diagnostics_document(records),
    }
    diagnostics = render_diagnostics(records)
    markdown = (
        render_markdown(groups)
        + ("\n" + compare_markdown if compare_markdown else "")
        + ("\n" + diagnostics if diagnostics else "")
    )
    return Report(
        runs,
        aggregates,
        comparisons,
        notes,
        markdown,
        render_csv(groups),
        render_comparisons_csv(comparisons, cell_keys),
        document,
    )
