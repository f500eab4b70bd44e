"""``fastlrwa report``: Table 1 (and Figure 4) of the paper for one or more run directories, the
differences between settings over seeds with their confidence intervals, and each run's per-epoch
diagnostics, printed or written to files; ``--samples``: a grid of one run's generated samples."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fastlrwa.atomic_io import atomic_write_text
from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.paths import require_writable_file
from fastlrwa.report.build import Report, build_report, read_runs
from fastlrwa.report.plot import image_format, plot_learning_curves, save_figure


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
    compare: str | None = None,
    equal_time: bool = False,
    time_budget_s: float | None = None,
    out_compare_csv: str | os.PathLike | None = None,
    samples: str | os.PathLike | None = None,
) -> Report:
    """Build Table 1 and the comparisons for ``run_dirs`` and write or print them.

    stdout gets the ``--json`` document when ``as_json``, otherwise the markdown unless ``out_md``
    is given. ``out_md``, ``out_csv``, ``out_compare_csv`` and ``plot`` (Figure 4; format from the
    suffix, e.g. .png) are written atomically, each announced on stderr; an unknown image type or an
    unwritable path is refused before anything is read or written. Raises ``UserFacingError`` for a
    path that is not a run, a damaged log, a ``compare`` that matches nothing or an unwritable output.
    ``samples``: a PNG of the one run's generated samples (:mod:`fastlrwa.commands.samples`).
    """
    if plot is not None:
        image_format(plot)
    if samples is not None:
        if len(run_dirs) != 1:
            raise ConfigError(
                f"--samples draws one run's generator and {len(run_dirs)} runs were given; "
                "pass one run directory with --samples"
            )
        if Path(samples).suffix.lower() != ".png":
            raise ConfigError(f"--samples {samples}: the grid is written as PNG; give a file name ending in .png")
    for flag, path in (
        ("--out", out_md),
        ("--csv", out_csv),
        ("--compare-csv", out_compare_csv),
        ("--plot", plot),
        ("--samples", samples),
    ):
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
    if samples is not None:
        from fastlrwa.commands.samples import write_samples  # torch: only when samples are asked for

        _write("samples", samples, lambda path: write_samples(run_dirs[0], path))
    if as_json:
        print(json.dumps(report.document, indent=2))
    elif out_md is None:
        print(report.markdown, end="")
    return report
