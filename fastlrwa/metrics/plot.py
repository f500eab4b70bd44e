"""The paper's Figure 4: test accuracy (top) and cumulative mean accuracy (bottom) per epoch.

One column per table block (dataset, teacher, student), methods overlaid, one colour per method
across the figure. Several seeds of a method are drawn as their mean with a min-max band. The
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
from fastlrwa.metrics.run_log import RunRecord
from fastlrwa.metrics.summary import Block, runs_label
from fastlrwa.metrics.table import cumulative_mean


def _method_colours(methods: Sequence[str]) -> dict[str, tuple[float, ...]]:
    palette = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"].colors
    return {method: palette[index % len(palette)] for index, method in enumerate(methods)}


def _padded(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Curves of different lengths as rows of one array, NaN past each curve's end."""
    table = np.full((len(curves), max(len(curve) for curve in curves)), np.nan)
    for row, curve in zip(table, curves):
        row[: len(curve)] = curve
    return table


def _draw_method(axes, curves: Sequence[Sequence[float]], colour, label: str) -> None:
    table = _padded(curves)
    epochs = np.arange(1, table.shape[1] + 1)
    axes.plot(epochs, np.nanmean(table, axis=0), color=colour, label=label, linewidth=1.5)
    if len(curves) > 1:
        axes.fill_between(epochs, np.nanmin(table, axis=0), np.nanmax(table, axis=0), color=colour,
                          alpha=0.2, linewidth=0)


def plot_learning_curves(records: Sequence[RunRecord]) -> Figure:
    """Figure 4 for the given runs; the caller saves it (``save_figure``)."""
    columns: dict[Block, dict[str, list[RunRecord]]] = {}
    for record in records:
        columns.setdefault(Block.of(record), {}).setdefault(record.method, []).append(record)
    colours = _method_colours(list(dict.fromkeys(record.method for record in records)))
    figure = Figure(figsize=(5.0 * len(columns), 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, len(columns), squeeze=False, sharex="col")
    for column, (block, methods) in enumerate(columns.items()):
        top, bottom = grid[0, column], grid[1, column]
        for method, runs in methods.items():
            seeds = runs_label([run.seed for run in runs])
            label = method if len(runs) == 1 else f"{method} ({seeds}, mean and min-max)"
            _draw_method(top, [run.accuracies for run in runs], colours[method], label)
            _draw_method(bottom, [cumulative_mean(run.accuracies) for run in runs], colours[method], label)
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
