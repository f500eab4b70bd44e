"""`fastlrwa report` comparisons: settings told apart by their config, pairs, baselines, equal training time.

Expected numbers are computed here from the per-epoch accuracies with the paper's definitions and the
Welch formula written out (scipy.stats.t), not with fastlrwa.report.
"""

from __future__ import annotations

import csv
import json
import math
import random
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from fastlrwa.cli import cli
from fastlrwa.commands.report import run_report
from fastlrwa.config.presets import train_config
from fastlrwa.config.schema import TrainConfig, to_dict
from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.report.plot import plot_learning_curves
from fastlrwa.run_log.metrics_file import MetricsLog, read_run

EPOCHS = 12


def write_run(
    root: Path,
    method: str,
    seed: int,
    accuracies: list[float],
    *,
    lr: float = 1e-3,
    epoch_times: list[float] | None = None,
    objectives: tuple[str, str] = ("paper", "official"),
    preset: str | None = None,
    **runtime,
) -> Path:
    """A run directory as `fastlrwa train` writes it, with a full recorded config (``objectives``: LRWA's
    and the joint update's; ``preset``: the config `fastlrwa train --preset PRESET --method METHOD` resolves,
    the method's own settings on that preset included, instead of the schema's defaults)."""
    config = to_dict(TrainConfig() if preset is None else train_config(preset, {"method": method}))
    config["method"], config["generator"]["lr"], config["runtime"]["seed"] = method, lr, seed
    config["lrwa"]["objective"], config["joint"]["objective"] = objectives
    config["schedule"]["epochs"] = len(accuracies)
    config["runtime"].update(runtime)
    run_dir = root / f"{method}-lr{lr}-seed{seed}-{len(list(root.glob('*')))}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "method": method,
                "dataset": "digits",
                "student": "lenet5_half",
                "teacher_arch": "lenet5",
                "teacher_sha256": "ab" * 32,
                "teacher_accuracy": 97.5,
                "seed": seed,
                "epochs": len(accuracies),
                "config": config,
            }
        )
    )
    log = MetricsLog(run_dir)
    times = epoch_times or [1.0] * len(accuracies)
    for epoch, (accuracy, seconds) in enumerate(zip(accuracies, times), start=1):
        log.append({"epoch": epoch, "test_accuracy": accuracy, "epoch_time_s": seconds})
    return run_dir


def curve(rng: random.Random, level: float, n: int = EPOCHS) -> list[float]:
    return [min(99.0, level + rng.gauss(0, 1.5)) for _ in range(n)]


def p80(accuracies: list[float]) -> tuple[float, float]:
    """Mean and population variance of the epochs k > 0.8 E (the paper's definition)."""
    selected = [a for k, a in enumerate(accuracies, start=1) if k > 0.8 * len(accuracies)]
    return statistics.fmean(selected), statistics.pvariance(selected)


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = statistics.fmean(a) - statistics.fmean(b)
    return d - half, d + half


def _zskd_against_mb_dfkd(tmp_path, rng, zskd_batch: int | None = None) -> tuple[list[Path], dict[str, list]]:
    """Three MB-DFKD and three ZSKD runs of the digits preset, each method with its own schedule and optimizer
    (ZSKD's Adam, its batch and iteration count); ``zskd_batch``: ZSKD's batch set by a flag instead."""
    curves = {"zskd": [curve(rng, 71.0) for _ in range(3)], "mb-dfkd": [curve(rng, 88.0) for _ in range(3)]}
    dirs = []
    for method, runs in curves.items():
        for seed, accuracies in enumerate(runs):
            run = write_run(tmp_path, method, seed, accuracies, preset="digits", lr=train_config("digits").generator.lr)
            if method == "zskd" and zskd_batch is not None:
                recorded = json.loads((run / "config.json").read_text())
                recorded["config"]["schedule"]["batch_size"] = zskd_batch
                (run / "config.json").write_text(json.dumps(recorded))
            dirs.append(run)
    return dirs, curves


def test_a_method_with_its_own_schedule_is_compared_in_its_cell(tmp_path, rng, capsys) -> None:
    dirs, curves = _zskd_against_mb_dfkd(tmp_path, rng)
    zskd, mb_dfkd = (json.loads((dirs[index] / "config.json").read_text())["config"] for index in (0, 3))
    assert zskd["schedule"] != mb_dfkd["schedule"] and zskd["student"]["optimizer"] != mb_dfkd["student"]["optimizer"]
    for compare in (None, "mb-dfkd"):
        run_report(dirs, as_json=True, compare=compare)
        [entry] = json.loads(capsys.readouterr().out)["comparisons"]
        assert (entry["a"]["method"], entry["b"]["method"]) == ("zskd", "mb-dfkd")
        quantities = {q["quantity"]: q for q in entry["quantities"]}
        a = [p80(acc)[0] for acc in curves["zskd"]]
        b = [p80(acc)[0] for acc in curves["mb-dfkd"]]
        assert quantities["p80_mean"]["difference"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
        low, high = welch(a, b)
        assert (quantities["p80_mean"]["welch_low"], quantities["p80_mean"]["welch_high"]) == pytest.approx((low, high))


def test_a_method_setting_changed_by_a_flag_splits_the_cell(tmp_path, rng, capsys) -> None:
    # ZSKD's batch set to 32 by a flag is not ZSKD's own setting: MB-DFKD at its batch of 64 is another cell.
    dirs, _ = _zskd_against_mb_dfkd(tmp_path, rng, zskd_batch=32)
    run_report(dirs, as_json=True)
    assert json.loads(capsys.readouterr().out)["comparisons"] == []
    report = run_report(dirs, as_json=True, compare="mb-dfkd")
    capsys.readouterr()
    assert "zskd on digits" in report.markdown and "no counterpart matching --compare mb-dfkd" in report.markdown


def test_two_methods_are_compared_automatically(tmp_path, rng, capsys) -> None:
    curves = {"lrwa-mb": [curve(rng, 85.0) for _ in range(3)], "mb-dfkd": [curve(rng, 84.0) for _ in range(4)]}
    dirs = [write_run(tmp_path, method, seed, acc) for method, runs in curves.items() for seed, acc in enumerate(runs)]
    report = run_report(dirs, as_json=True)
    document = json.loads(capsys.readouterr().out)
    [entry] = document["comparisons"]
    assert (entry["view"], entry["a"]["label"], entry["b"]["label"]) == ("epochs", "lrwa-mb", "mb-dfkd")
    quantities = {q["quantity"]: q for q in entry["quantities"]}
    for key, index in (("p80_mean", 0), ("p80_var", 1)):
        a = [p80(acc)[index] for acc in curves["lrwa-mb"]]
        b = [p80(acc)[index] for acc in curves["mb-dfkd"]]
        assert quantities[key]["a"] == pytest.approx(a, rel=1e-12)
        assert quantities[key]["b"] == pytest.approx(b, rel=1e-12)
        assert quantities[key]["difference"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b), rel=1e-9)
        low, high = welch(a, b)
        assert (quantities[key]["welch_low"], quantities[key]["welch_high"]) == pytest.approx((low, high), rel=1e-9)
        assert quantities[key]["bootstrap_resamples"] == 10000 and quantities[key]["bootstrap_seed"] == 0
        if low <= 0 <= high and quantities[key]["bootstrap_low"] <= 0 <= quantities[key]["bootstrap_high"]:
            assert quantities[key]["verdict"] == "cannot be told apart at 3 vs 4 seeds"
    assert "# Differences between settings" in report.markdown
    assert "| lrwa-mb − mb-dfkd | 3 / 4 | >80th μ |" in report.markdown


def test_one_seed_a_method_gives_no_comparison(tmp_path, rng) -> None:
    dirs = [write_run(tmp_path, "lrwa-mb", 0, curve(rng, 80)), write_run(tmp_path, "mb-dfkd", 0, curve(rng, 80))]
    report = run_report(dirs, out_md=tmp_path / "t.md")
    assert report.comparisons == [] and "Differences" not in report.markdown


def test_a_config_key_splits_settings_and_run_local_keys_do_not(tmp_path, rng) -> None:
    dirs = [
        write_run(tmp_path, "lrwa-mb", seed, curve(rng, 80), lr=lr, device=device, out=f"runs/{seed}")
        for lr in (1e-3, 3e-3)
        for seed, device in ((0, "cpu"), (1, "cuda:1"))
    ]
    report = run_report(dirs, out_md=tmp_path / "t.md")
    assert sorted(len(aggregate.runs) for aggregate in report.aggregates) == [2, 2]
    assert "| lrwa-mb · generator.lr=0.001 (2 seeds) |" in report.markdown
    assert "| lrwa-mb · generator.lr=0.003 (seed 1) |" in report.markdown
    assert report.document["aggregates"][0]["cell"] == {"generator.lr": 0.001}
    assert report.comparisons == []  # same method, and no --compare
    rows = list(csv.DictReader(report.csv.splitlines()))
    assert {row["cell"] for row in rows} == {"generator.lr=0.001", "generator.lr=0.003"}


@pytest.fixture
def grid(tmp_path, rng) -> dict[tuple[str, float], list[tuple[Path, list[float]]]]:
    """2 methods x 2 generator learning rates x 3 seeds, as a sweep makes them."""
    made = {}
    for method, level in (("lrwa-mb", 82.0), ("mb-dfkd", 80.0)):
        for lr in (1e-3, 3e-3):
            made[(method, lr)] = []
            for seed in range(3):
                accuracies = curve(rng, level + (2.0 if lr == 3e-3 else 0.0))
                made[(method, lr)].append((write_run(tmp_path, method, seed, accuracies, lr=lr), accuracies))
    return made


def _dirs(grid) -> list[Path]:
    return [run_dir for runs in grid.values() for run_dir, _ in runs]


def _pairs(report) -> set[tuple[str, str]]:
    def name(aggregate) -> str:
        return f"{aggregate.method}@{dict(aggregate.setting)['generator.lr']}"

    return {(name(comparison.a), name(comparison.b)) for comparison in report.comparisons}


def test_pairs_without_baseline_are_the_methods_of_each_cell(grid, tmp_path) -> None:
    report = run_report(_dirs(grid), out_md=tmp_path / "t.md")
    assert _pairs(report) == {("lrwa-mb@0.001", "mb-dfkd@0.001"), ("lrwa-mb@0.003", "mb-dfkd@0.003")}
    assert "| lrwa-mb · generator.lr=0.003 − mb-dfkd · generator.lr=0.003 | 3 / 3 |" in report.markdown


def test_baseline_method_and_baseline_value(grid, tmp_path) -> None:
    by_method = run_report(_dirs(grid), out_md=tmp_path / "a.md", compare="mb-dfkd")
    assert _pairs(by_method) == {("lrwa-mb@0.001", "mb-dfkd@0.001"), ("lrwa-mb@0.003", "mb-dfkd@0.003")}
    by_value = run_report(_dirs(grid), out_md=tmp_path / "b.md", compare="generator.lr=1e-3")
    assert _pairs(by_value) == {("lrwa-mb@0.003", "lrwa-mb@0.001"), ("mb-dfkd@0.003", "mb-dfkd@0.001")}
    both = run_report(_dirs(grid), out_md=tmp_path / "c.md", compare="mb-dfkd,generator.lr=0.001")
    assert _pairs(both) == {
        ("lrwa-mb@0.001", "mb-dfkd@0.001"),
        ("lrwa-mb@0.003", "mb-dfkd@0.001"),
        ("mb-dfkd@0.003", "mb-dfkd@0.001"),
    }
    comparison = next(c for c in by_value.comparisons if c.a.method == "mb-dfkd")
    a = [p80(acc)[0] for _, acc in grid[("mb-dfkd", 3e-3)]]
    b = [p80(acc)[0] for _, acc in grid[("mb-dfkd", 1e-3)]]
    interval = comparison.rows[0].difference.welch
    assert (interval.low, interval.high) == pytest.approx(welch(a, b), rel=1e-9)


def test_a_method_is_compared_whatever_the_options_of_an_update_it_does_not_run(tmp_path, rng) -> None:
    # MB-DFKD with two joint objectives, LRWA with another LRWA objective in each of its runs' records: the
    # MB-DFKD settings differ (it reads the joint objective), LRWA's does not (it never reads it).
    plan = [
        ("mb-dfkd", ("paper", "official")),
        ("mb-dfkd", ("paper", "paper")),
        ("lrwa-mb", ("official", "official")),
        ("lrwa-mb", ("official", "paper")),
    ]
    dirs = [
        write_run(tmp_path, method, seed, curve(rng, 80.0), objectives=objectives)
        for (method, objectives), seeds in zip(plan, ((0, 1), (0, 1), (0,), (1,)), strict=True)
        for seed in seeds
    ]

    def names(report) -> set[tuple[str, str]]:
        def name(aggregate) -> str:
            return "/".join(f"{k}={v}" for k, v in aggregate.setting if k.endswith(".objective")) or aggregate.method

        return {(f"{c.a.method}:{name(c.a)}", f"{c.b.method}:{name(c.b)}") for c in report.comparisons}

    lrwa = "lrwa-mb:lrwa.objective=official"
    expected = {(lrwa, "mb-dfkd:joint.objective=official"), (lrwa, "mb-dfkd:joint.objective=paper")}
    automatic = run_report(dirs, out_md=tmp_path / "a.md")
    assert {frozenset(pair) for pair in names(automatic)} == {frozenset(pair) for pair in expected}
    assert names(run_report(dirs, out_md=tmp_path / "b.md", compare="mb-dfkd")) == expected
    assert "lrwa-mb · lrwa.objective=official (2 seeds)" not in automatic.markdown
    assert "| lrwa-mb (2 seeds) |" in automatic.markdown
    assert "| mb-dfkd · joint.objective=paper (2 seeds) |" in automatic.markdown


def test_a_setting_without_counterpart_is_noted(grid, tmp_path) -> None:
    dirs = [run_dir for (method, lr), runs in grid.items() for run_dir, _ in runs if (method, lr) != ("mb-dfkd", 3e-3)]
    report = run_report(dirs, out_md=tmp_path / "t.md", compare="mb-dfkd")
    assert _pairs(report) == {("lrwa-mb@0.001", "mb-dfkd@0.001")}
    assert len(report.not_compared) == 1 and "lrwa-mb" in report.not_compared[0]
    assert "Not compared:" in report.markdown


@pytest.mark.parametrize(
    "baseline, problem",
    [
        ("dfad", "no setting with at least 2 seeds matches it"),
        ("generator.nope=1", "generator.nope is not a config key these runs record"),
        ("generator.lr=fast", "the runs record generator.lr as float"),
        ("mb-dfkd,dfad", "names two methods"),
        ("generator.lr=", "is neither a method nor key=value"),
    ],
)
def test_bad_baselines_are_one_line(grid, tmp_path, baseline, problem) -> None:
    with pytest.raises(ConfigError, match=problem) as error:
        run_report(_dirs(grid), out_md=tmp_path / "t.md", compare=baseline)
    assert "\n" not in str(error.value) and not (tmp_path / "t.md").exists()


def _cut(accuracies: list[float], times: list[float], budget: float) -> list[float]:
    kept, clock = [], 0.0
    for accuracy, seconds in zip(accuracies, times):
        clock += seconds
        if clock <= budget:
            kept.append(accuracy)
    return kept


def test_equal_training_time(tmp_path, rng, capsys) -> None:
    runs = {}
    for method, per_epoch, level in (("lrwa-mb", 2.6, 84.0), ("mb-dfkd", 1.0, 82.0)):
        runs[method] = []
        for seed in range(3):
            accuracies = curve(rng, level)
            times = [per_epoch * rng.uniform(0.9, 1.1) for _ in range(EPOCHS)]
            runs[method].append((write_run(tmp_path, method, seed, accuracies, epoch_times=times), accuracies, times))
    dirs = [run[0] for method_runs in runs.values() for run in method_runs]
    budget = min(sum(times) for method_runs in runs.values() for _, _, times in method_runs)
    report = run_report(dirs, as_json=True, equal_time=True)
    document = json.loads(capsys.readouterr().out)
    [timed] = [entry for entry in document["comparisons"] if entry["view"] == "equal_time"]
    assert timed["budget_s"] == pytest.approx(budget, rel=1e-12)
    cut = {method: [_cut(acc, times, budget) for _, acc, times in method_runs] for method, method_runs in runs.items()}
    assert timed["epochs_a"] == [len(kept) for kept in cut["lrwa-mb"]]
    assert timed["epochs_b"] == [len(kept) for kept in cut["mb-dfkd"]]
    assert max(timed["epochs_a"]) < EPOCHS
    quantities = {q["quantity"]: q for q in timed["quantities"]}
    assert quantities["accuracy_at_budget"]["a"] == [kept[-1] for kept in cut["lrwa-mb"]]
    assert quantities["p80_mean"]["b"] == pytest.approx([p80(kept)[0] for kept in cut["mb-dfkd"]], rel=1e-12)
    assert quantities["p80_var"]["a"] == pytest.approx([p80(kept)[1] for kept in cut["lrwa-mb"]], rel=1e-9)
    assert "equal training time" in report.markdown and f"T = {budget:.1f} s of training" in report.markdown

    explicit = run_report(dirs, out_md=tmp_path / "t.md", equal_time=True, time_budget_s=5.0)
    timed = [c for c in explicit.comparisons if c.view == "equal_time"][0]
    assert timed.budget_s == 5.0
    assert timed.epochs_a == [len(_cut(acc, times, 5.0)) for _, acc, times in runs["lrwa-mb"]]
    with pytest.raises(UserFacingError, match="shorter than the first epoch"):
        run_report(dirs, out_md=tmp_path / "t.md", equal_time=True, time_budget_s=0.5)


def test_equal_time_needs_epoch_times(tmp_path, rng) -> None:
    dirs = [write_run(tmp_path, method, seed, curve(rng, 80)) for method in ("lrwa-mb", "mb-dfkd") for seed in (0, 1)]
    lines = (dirs[0] / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[3])
    del record["epoch_time_s"]
    lines[3] = json.dumps(record)
    (dirs[0] / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserFacingError, match="epoch 4 has no epoch_time_s") as error:
        run_report(dirs, out_md=tmp_path / "t.md", equal_time=True)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="--equal-time compares two settings"):
        run_report(dirs[:2], out_md=tmp_path / "t.md", equal_time=True)


def test_command_line_writes_the_comparison_csv(grid, tmp_path) -> None:
    out = tmp_path / "compare.csv"
    result = CliRunner().invoke(
        cli,
        ["report", *map(str, _dirs(grid)), "--compare", "mb-dfkd", "--equal-time", "--compare-csv", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 2 * 2 + 2 * 3  # 2 pairs x (2 quantities at equal epochs + 3 at equal time)
    by_key = {(row["view"], row["a"], row["quantity"]): row for row in rows}
    for entry in document["comparisons"]:
        for quantity in entry["quantities"]:
            row = by_key[(entry["view"], entry["a"]["label"], quantity["quantity"])]
            assert float(row["welch_low"]) == quantity["welch_low"] and row["verdict"] == quantity["verdict"]
            assert float(row["a_mean"]) == pytest.approx(statistics.fmean(quantity["a"]), rel=1e-12)
    bad = CliRunner().invoke(cli, ["report", *map(str, _dirs(grid)), "--compare", "dfad"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --compare 'dfad'")


def test_figure_draws_each_setting_apart(tmp_path, rng) -> None:
    curves = {lr: [curve(rng, 70.0 + 1000 * lr) for _ in range(2)] for lr in (1e-3, 3e-3)}
    dirs = [
        write_run(tmp_path, "lrwa-mb", seed, accuracies, lr=lr)
        for lr, runs in curves.items()
        for seed, accuracies in enumerate(runs)
    ]
    top, _ = plot_learning_curves([read_run(run_dir) for run_dir in dirs]).axes
    legend = [text.get_text() for text in top.get_legend().get_texts()]
    assert legend == [f"lrwa-mb · generator.lr={lr} (2 seeds, mean and min-max)" for lr in ("0.001", "0.003")]
    for line, lr in zip(top.get_lines(), (1e-3, 3e-3)):
        expected = [statistics.fmean(run[k] for run in curves[lr]) for k in range(EPOCHS)]
        assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)
