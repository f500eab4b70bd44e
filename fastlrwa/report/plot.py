"""The paper's Figure 4: test accuracy (top) and cumulative mean accuracy (bottom) per epoch.

One column per table block (dataset, teacher, student), settings overlaid, one colour per setting
across the figure (a setting is a method, or a method and the config values that tell it apart, as
in the table). Several seeds of a setting are drawn as their mean with a min-max band. The
figure is built on the Agg canvas directly (no pyplot), so nothing needs a display and nothing
lingers in a global figure registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fastlrwa.atomic_io import atomic_write_with
from fastlrwa.errors import ConfigError
from fastlrwa.report.summary import Block, runs_label
from fastlrwa.report.table import cumulative_mean
from fastlrwa.run_log.metrics_file import RunRecord
from fastlrwa.run_log.settings import differing_keys, setting_name, setting_of


def _colours(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


def _padded(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Curves of different lengths as rows of one array, NaN past each curve's end."""
    table = np.full((len(curves), max(len(curve) for curve in curves)), np.nan)
    for row, curve in zip(table, curves):
        row[: len(curve)] = curve
    return table


def _draw_setting(axes, curves: Sequence[Sequence[float]], colour, label: str) -> None:
    table = _padded(curves)
    epochs = np.arange(1, table.shape[1] + 1)
    axes.plot(epochs, np.nanmean(table, axis=0), color=colour, label=label, linewidth=1.5)
    if len(curves) > 1:
        axes.fill_between(
            epochs, np.nanmin(table, axis=0), np.nanmax(table, axis=0), color=colour, alpha=0.2, linewidth=0
        )


def _columns(records: Sequence[RunRecord]) -> dict[Block, dict[str, list[RunRecord]]]:
    """Block -> setting name -> its runs, in the order they are given."""
    blocks: dict[Block, list[RunRecord]] = {}
    for record in records:
        blocks.setdefault(Block.of(record), []).append(record)
    columns: dict[Block, dict[str, list[RunRecord]]] = {}
    for block, members in blocks.items():
        keys = differing_keys(setting_of(record.config) for record in members)
        for record in members:
            name = setting_name(record.method, setting_of(record.config), keys)
            columns.setdefault(block, {}).setdefault(name, []).append(record)
    return columns


def plot_learning_curves(records: Sequence[RunRecord]) -> Figure:
    """Figure 4 for the given runs that measured their accuracy; the caller saves it (``save_figure``)."""
    measured = [record for record in records if record.accuracy_measured]
    if not measured:
        raise ConfigError(
            "--plot draws the test accuracy, and none of these runs measured it (no test data); "
            "leave --plot out, or give runs trained with --test-data"
        )
    columns = _columns(measured)
    colours = _colours(list(dict.fromkeys(name for settings in columns.values() for name in settings)))
    figure = Figure(figsize=(5.0 * len(columns), 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, len(columns), squeeze=False, sharex="col")
    for column, (block, settings) in enumerate(columns.items()):
        top, bottom = grid[0, column], grid[1, column]
        for name, runs in settings.items():
            label = name if len(runs) == 1 else f"{name} ({runs_label([run.seed for run in runs])}, mean and min-max)"
            _draw_setting(top, [run.accuracies for run in runs], colours[name], label)
            _draw_setting(bottom, [cumulative_mean(run.accuracies) for run in runs], colours[name], label)
        top.set_title(block.title)
        top.set_ylabel("Accuracy (%)")
        bottom.set_ylabel("Cumulative mean accuracy (%)")
        bottom.set_xlabel("Epoch")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axes in (top, bottom):
            axes.grid(True, alpha=0.3)
        top.legend(loc="best", fontsize="small")
    return figure


def image_format(path: str | os.PathLike) -> str:
    """The image format a figure file's suffix names; ``ConfigError`` if matplotlib cannot write it."""
    path = Path(path)
    supported = FigureCanvasAgg.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in supported:
        raise ConfigError(
            f"cannot draw into {path}: unknown image type {path.suffix or '(none)'}; "
            f"end the name with .png (or one of: {', '.join(sorted(supported))})"
        )
    return suffix


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure atomically, in the image format named by the file's suffix."""
    chosen_format = image_format(path)
    return atomic_write_with(path, lambda handle: figure.savefig(handle, format=chosen_format, dpi=150))
