"""Figure 4: a valid image, one colour per method, seeds as mean line plus min-max band."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb

from fastlrwa.errors import ConfigError
from fastlrwa.report.plot import plot_learning_curves, save_figure
from fastlrwa.run_log.metrics_file import RunRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _record(method: str, seed: int, accuracies: list[float], dataset: str = "digits") -> RunRecord:
    return RunRecord(
        path=Path(f"{method}-{seed}"),
        method=method,
        dataset=dataset,
        student="lenet5_half",
        teacher="lenet5",
        teacher_sha256="ab" * 32,
        seed=seed,
        epochs_configured=len(accuracies),
        teacher_accuracy=None,
        accuracies=accuracies,
        metrics=[{"epoch": k} for k in range(1, len(accuracies) + 1)],
        complete=True,
    )


def _random_run(rng: random.Random, method: str, seed: int, n_epochs: int, dataset: str = "digits") -> RunRecord:
    return _record(method, seed, [rng.uniform(5.0, 99.0) for _ in range(n_epochs)], dataset)


def test_two_methods_two_colours_and_seed_band(rng: random.Random) -> None:
    seeds = [_random_run(rng, "lrwa-mb", seed, 11) for seed in range(3)]
    single = _random_run(rng, "mb-dfkd", 0, 11)
    figure = plot_learning_curves(seeds + [single])
    top, bottom = figure.axes
    assert top.get_title() == "digits · teacher lenet5 · student lenet5_half"
    assert bottom.get_xlabel() == "Epoch" and "Accuracy" in top.get_ylabel()
    assert "Cumulative mean" in bottom.get_ylabel()
    for axes in (top, bottom):
        lines = axes.get_lines()
        assert len(lines) == 2
        assert lines[0].get_color() != lines[1].get_color()
        bands = [child for child in axes.get_children() if isinstance(child, PolyCollection)]
        assert len(bands) == 1
        assert np.allclose(bands[0].get_facecolor()[0][:3], to_rgb(lines[0].get_color()))
    legend = [text.get_text() for text in top.get_legend().get_texts()]
    assert legend[0].startswith("lrwa-mb (3 seeds") and legend[1] == "mb-dfkd"

    epochs, mean_line = top.get_lines()[0].get_data()
    assert list(epochs) == list(range(1, 12))
    expected_mean = [statistics.fmean(run.accuracies[k] for run in seeds) for k in range(11)]
    assert np.allclose(mean_line, expected_mean, rtol=1e-12)
    _, cumulative_line = bottom.get_lines()[1].get_data()
    expected_cumulative = [statistics.fmean(single.accuracies[: k + 1]) for k in range(11)]
    assert np.allclose(cumulative_line, expected_cumulative, rtol=1e-12)


def test_one_column_per_dataset_same_colour_per_method(rng: random.Random) -> None:
    records = [
        _random_run(rng, "dfad", 0, 7, "digits"),
        _random_run(rng, "lrwa-gr", 0, 9, "fashion_mnist"),
        _random_run(rng, "dfad", 1, 9, "fashion_mnist"),
    ]
    figure = plot_learning_curves(records)
    assert len(figure.axes) == 4
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == [
        "digits · teacher lenet5 · student lenet5_half",
        "fashion_mnist · teacher lenet5 · student lenet5_half",
    ]
    digits_top, fashion_top = figure.axes[0], figure.axes[1]
    dfad_colours = {
        to_rgb(line.get_color())
        for axes in (digits_top, fashion_top)
        for line in axes.get_lines()
        if line.get_label() == "dfad"
    }
    assert len(dfad_colours) == 1


def test_seeds_of_different_length_average_what_exists(rng: random.Random) -> None:
    short, long = _random_run(rng, "dfq", 0, 5), _random_run(rng, "dfq", 1, 8)
    top = plot_learning_curves([short, long]).axes[0]
    _, mean_line = top.get_lines()[0].get_data()
    expected = [(short.accuracies[k] + long.accuracies[k]) / 2 for k in range(5)] + long.accuracies[5:]
    assert np.allclose(mean_line, expected, rtol=1e-12)


def test_save_figure_writes_a_png(rng: random.Random, tmp_path: Path) -> None:
    figure = plot_learning_curves([_random_run(rng, "dfad", 0, 6), _random_run(rng, "dafl", 0, 6)])
    out = save_figure(figure, tmp_path / "figures" / "figure4.png")
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["figure4.png"]


def test_unknown_image_type_is_an_error(rng: random.Random, tmp_path: Path) -> None:
    figure = plot_learning_curves([_random_run(rng, "dfad", 0, 3)])
    with pytest.raises(ConfigError, match=r"\.png"):
        save_figure(figure, tmp_path / "figure4.xyz")
