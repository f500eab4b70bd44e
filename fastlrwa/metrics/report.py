"""`fastlrwa report`: Table 1 (and Figure 4) of the paper for one or more run directories."""

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
from fastlrwa.metrics.plot import image_format, plot_learning_curves, save_figure
from fastlrwa.metrics.render import render_csv, render_markdown, report_document
from fastlrwa.metrics.run_log import METRICS_FILE, RunRecord, read_run
from fastlrwa.metrics.summary import AggregateSummary, RunSummary, summarise_runs, table_groups
from fastlrwa.paths import require_writable_file


@dataclass(frozen=True)
class Report:
    """Everything the report computed: the rows, the markdown text and the ``--json`` document."""

    runs: list[RunSummary]
    aggregates: list[AggregateSummary]
    markdown: str
    document: dict[str, Any]


def _read_runs(run_dirs: Sequence[str | os.PathLike]) -> list[RunRecord]:
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


def run_report(
    run_dirs: Sequence[str | os.PathLike],
    *,
    out_md: str | os.PathLike | None = None,
    out_csv: str | os.PathLike | None = None,
    as_json: bool = False,
    plot: str | os.PathLike | None = None,
) -> Report:
    """Build Table 1 for ``run_dirs`` and write or print it.

    stdout gets the ``--json`` document when ``as_json``, otherwise the markdown unless ``out_md``
    is given. ``out_md``, ``out_csv`` and ``plot`` (Figure 4; format from the suffix, e.g. .png) are
    written atomically, each announced on stderr; an unknown image type or an unwritable path is
    refused before anything is read or written. Raises ``UserFacingError`` for a path that is not a run, a damaged log or an
    unwritable output.
    """
    if plot is not None:
        image_format(plot)
    for flag, path in (("--out", out_md), ("--csv", out_csv), ("--plot", plot)):
        if path is not None:
            require_writable_file(path, flag)
    records = _read_runs(run_dirs)
    runs, aggregates = summarise_runs(records)
    groups = table_groups(runs, aggregates)
    report = Report(runs, aggregates, render_markdown(groups), report_document(runs, aggregates))
    if out_md is not None:
        _write("table", out_md, lambda path: atomic_write_text(path, report.markdown))
    if out_csv is not None:
        csv_text = render_csv(groups)
        _write("CSV", out_csv, lambda path: atomic_write_text(path, csv_text))
    if plot is not None:
        figure = plot_learning_curves(records)
        _write("plot", plot, lambda path: save_figure(figure, path))
    if as_json:
        print(json.dumps(report.document, indent=2))
    elif out_md is None:
        print(report.markdown, end="")
    return report
