"""`fastlrwa report`: Table 1 (and Figure 4) of the paper for one or more run directories, and the
differences between settings over seeds with their confidence intervals (``metrics.comparisons``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastlrwa.atomic_io import atomic_write_text
from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.metrics.compare import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from fastlrwa.metrics.comparisons import Comparison, build_comparisons
from fastlrwa.metrics.plot import image_format, plot_learning_curves, save_figure
from fastlrwa.metrics.render import render_csv, render_markdown, report_document
from fastlrwa.metrics.render_compare import (
    comparisons_document,
    render_comparisons_csv,
    render_comparisons_markdown,
)
from fastlrwa.metrics.run_log import METRICS_FILE, RunRecord, read_run
from fastlrwa.metrics.summary import AggregateSummary, RunSummary, summarise_runs, table_groups
from fastlrwa.paths import require_writable_file


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
        if not record.accuracies:
            raise UserFacingError(
                f"{record.path} has not finished an epoch yet ({METRICS_FILE} is empty); "
                f"report it after its first epoch or leave it out"
            )
    return records


def _write(what: str, path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    try:
        write(Path(path))
    except OSError as error:
        raise UserFacingError(
            f"cannot write the {what} to {path}: {error.strerror}; choose a writable file path"
        ) from None
    print(f"wrote {path}", file=sys.stderr)


def build_report(records: Sequence[RunRecord], *, compare: str | None = None, equal_time: bool = False,
                 time_budget_s: float | None = None) -> Report:
    """Table 1 of ``records`` and the differences between its settings (see ``metrics.comparisons``).

    ``compare`` names the baseline (a method and/or ``key=value``); without it, settings that differ
    only in their method are compared pairwise. ``equal_time`` adds the comparison at equal training
    time, cut at ``time_budget_s`` (default: the shortest run's total training time).
    """
    runs, aggregates = summarise_runs(records)
    groups = table_groups(runs, aggregates)
    cell_keys = {group.block: group.cell_keys for group in groups}
    comparisons, notes = build_comparisons(aggregates, baseline=compare, equal_time=equal_time,
                                           time_budget_s=time_budget_s)
    compare_markdown = render_comparisons_markdown(comparisons, notes, cell_keys, resamples=BOOTSTRAP_RESAMPLES,
                                                   seed=BOOTSTRAP_SEED)
    document = {**report_document(runs, aggregates, cell_keys), **comparisons_document(comparisons, notes, cell_keys)}
    markdown = render_markdown(groups) + ("\n" + compare_markdown if compare_markdown else "")
    return Report(runs, aggregates, comparisons, notes, markdown, render_csv(groups),
                  render_comparisons_csv(comparisons, cell_keys), document)


def run_report(
    run_dirs: Sequence[str | os.PathLike],
    *,
    out_md: str | os.PathLike | None = None,
    out_csv: str | os.PathLike | None = None,
    as_json: bool = False,
    plot: str | os.PathLike | None = None,
    compare: str | None = None,
    equal_time: bool = False,
    time_budget_s: float | None = None,
    out_compare_csv: str | os.PathLike | None = None,
) -> Report:
    """Build Table 1 and the comparisons for ``run_dirs`` and write or print them.

    stdout gets the ``--json`` document when ``as_json``, otherwise the markdown unless ``out_md``
    is given. ``out_md``, ``out_csv``, ``out_compare_csv`` and ``plot`` (Figure 4; format from the
    suffix, e.g. .png) are written atomically, each announced on stderr; an unknown image type or an
    unwritable path is refused before anything is read or written. Raises ``UserFacingError`` for a
    path that is not a run, a damaged log, a ``compare`` that matches nothing or an unwritable output.
    """
    if plot is not None:
        image_format(plot)
    for flag, path in (("--out", out_md), ("--csv", out_csv), ("--compare-csv", out_compare_csv), ("--plot", plot)):
        if path is not None:
            require_writable_file(path, flag)
    records = read_runs(run_dirs)
    report = build_report(records, compare=compare, equal_time=equal_time, time_budget_s=time_budget_s)
    if out_md is not None:
        _write("table", out_md, lambda path: atomic_write_text(path, report.markdown))
    if out_csv is not None:
        _write("CSV", out_csv, lambda path: atomic_write_text(path, report.csv))
    if out_compare_csv is not None:
        _write("comparison CSV", out_compare_csv, lambda path: atomic_write_text(path, report.compare_csv))
    if plot is not None:
        figure = plot_learning_curves(records)
        _write("plot", plot, lambda path: save_figure(figure, path))
    if as_json:
        print(json.dumps(report.document, indent=2))
    elif out_md is None:
        print(report.markdown, end="")
    return report
