"""`fastlrwa report` on synthetic run directories: JSON, markdown, CSV and the command line.

Expected cells come from the paper's definition written out here (statistics module), not from
fastlrwa.report.table.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastlrwa.cli import cli
from fastlrwa.commands.report import run_report
from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.run_log.metrics_file import MetricsLog

PERCENTILES = (0, 20, 40, 60, 80)
TEACHER_ACCURACY = 97.45
EPOCHS = 13


def write_run(
    root: Path,
    method: str,
    seed: int,
    accuracies: list[float],
    epochs: int = EPOCHS,
    teacher_sha256: str = "ab" * 32,
    config: dict | None = None,
) -> Path:
    run_dir = root / f"{method}-seed{seed}-{teacher_sha256[:4]}"
    run_dir.mkdir(parents=True)
    config = {
        "fastlrwa_version": "0.1.0",
        "method": method,
        "dataset": "digits",
        "student": "lenet5_half",
        "teacher_arch": "lenet5",
        "teacher_sha256": teacher_sha256,
        "teacher_accuracy": TEACHER_ACCURACY,
        "seed": seed,
        "epochs": epochs,
        "config": config or {},
        "versions": {},
        "device": "cpu",
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    log = MetricsLog(run_dir)
    for epoch, accuracy in enumerate(accuracies, start=1):
        log.append({"epoch": epoch, "test_accuracy": accuracy, "loss_student": 0.5 / epoch})
    return run_dir


def reference_cells(accuracies: list[float]) -> dict:
    """Table-1 cells by the paper's definition: epochs k > n * E / 100, population variance."""
    n_epochs = len(accuracies)
    cells = {"acc_max": max(accuracies)}
    for n in PERCENTILES:
        selected = [a for k, a in enumerate(accuracies, start=1) if k > n * n_epochs / 100]
        cells[n] = (statistics.fmean(selected), statistics.pvariance(selected))
    return cells


@pytest.fixture
def runs(tmp_path: Path, rng: random.Random) -> dict[str, list[tuple[Path, list[float]]]]:
    """Three seeds of mb-dfkd, two of lrwa-mb, one unfinished dfad run."""
    plan = {"mb-dfkd": [(0, EPOCHS), (1, EPOCHS), (2, EPOCHS)], "lrwa-mb": [(0, EPOCHS), (5, EPOCHS)], "dfad": [(0, 7)]}
    made = {}
    for method, seeds in plan.items():
        made[method] = []
        for seed, n_logged in seeds:
            accuracies = [rng.uniform(5.0, 99.0) for _ in range(n_logged)]
            made[method].append((write_run(tmp_path, method, seed, accuracies), accuracies))
    return made


def _all_dirs(runs) -> list[str]:
    return [str(run_dir) for method_runs in runs.values() for run_dir, _ in method_runs]


def test_json_document(runs, capsys) -> None:
    run_report(_all_dirs(runs), as_json=True)
    document = json.loads(capsys.readouterr().out)
    by_dir = {entry["run"]: entry for entry in document["runs"]}
    assert len(by_dir) == 6
    for method, method_runs in runs.items():
        for run_dir, accuracies in method_runs:
            entry = by_dir[str(run_dir)]
            assert set(entry) == {
                "run",
                "method",
                "cell",
                "dataset",
                "seed",
                "epochs",
                "accuracy_measured",
                "acc_max",
                "percentiles",
                "agree_heldout",
            }
            assert entry["cell"] == {} and entry["accuracy_measured"] is True and entry["agree_heldout"] is None
            assert (entry["method"], entry["dataset"], entry["epochs"]) == (method, "digits", len(accuracies))
            expected = reference_cells(accuracies)
            assert entry["acc_max"] == expected["acc_max"]
            assert set(entry["percentiles"]) == {str(n) for n in PERCENTILES}
            for n in PERCENTILES:
                cell = entry["percentiles"][str(n)]
                assert set(cell) == {"mean", "var"}
                assert cell["mean"] == pytest.approx(expected[n][0], rel=1e-12)
                assert cell["var"] == pytest.approx(expected[n][1], rel=1e-10)

    aggregates = {entry["method"]: entry for entry in document["aggregates"]}
    assert set(aggregates) == {"mb-dfkd", "lrwa-mb"}
    for method, entry in aggregates.items():
        per_run = [reference_cells(accuracies) for _, accuracies in runs[method]]
        assert entry["n_runs"] == len(per_run)
        assert entry["dataset"] == "digits"
        assert entry["runs"] == [str(run_dir) for run_dir, _ in runs[method]]
        maxima = [cells["acc_max"] for cells in per_run]
        assert entry["acc_max"]["mean"] == pytest.approx(statistics.mean(maxima), rel=1e-12)
        assert entry["acc_max"]["std"] == pytest.approx(statistics.stdev(maxima), rel=1e-9)
        for n in PERCENTILES:
            for index, key in enumerate(("mean", "var")):
                values = [cells[n][index] for cells in per_run]
                assert entry["percentiles"][str(n)][key]["mean"] == pytest.approx(statistics.mean(values), rel=1e-10)
                assert entry["percentiles"][str(n)][key]["std"] == pytest.approx(statistics.stdev(values), rel=1e-8)


def _markdown_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| Method") and not line.startswith("| :"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_markdown_table(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report" / "table.md"
    run_report(_all_dirs(runs), out_md=out)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {out}" in captured.err
    markdown = out.read_text()
    assert "## digits · teacher lenet5 · student lenet5_half" in markdown
    assert f"T_Acc = {TEACHER_ACCURACY:.2f}%" in markdown
    assert f"Epochs (E) = {EPOCHS}" in markdown
    rows = _markdown_rows(markdown)
    for method, method_runs in runs.items():
        for run_dir, accuracies in method_runs:
            seed = json.loads((run_dir / "config.json").read_text())["seed"]
            label = (
                f"{method} (seed {seed})"
                if len(accuracies) == EPOCHS
                else f"{method} (seed {seed}, {len(accuracies)}/{EPOCHS} epochs)"
            )
            expected = reference_cells(accuracies)
            numbers = [f"{value:.2f}" for n in PERCENTILES for value in expected[n]]
            # Runs logged without the held-out agreement show "–" in its column.
            assert rows[label] == numbers + [f"{expected['acc_max']:.2f}", "–"]
    per_run = [reference_cells(accuracies) for _, accuracies in runs["mb-dfkd"]]
    aggregate_row = rows["mb-dfkd (3 seeds)"]
    for column, n in enumerate(PERCENTILES):
        means = [cells[n][0] for cells in per_run]
        assert aggregate_row[2 * column] == f"{statistics.mean(means):.2f} ± {statistics.stdev(means):.2f}"
    maxima = [cells["acc_max"] for cells in per_run]
    assert aggregate_row[-2:] == [f"{statistics.mean(maxima):.2f} ± {statistics.stdev(maxima):.2f}", "–"]
    assert "lrwa-mb (2 seeds)" in rows
    assert not any(label.startswith("dfad (") and "seeds" in label for label in rows)


def test_markdown_goes_to_stdout_without_out(runs, capsys) -> None:
    report = run_report(_all_dirs(runs))
    assert capsys.readouterr().out == report.markdown
    assert "mb-dfkd (3 seeds)" in report.markdown


def test_csv_parses_back(runs, tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    run_report(_all_dirs(runs), out_csv=out, as_json=True)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    run_rows = {row["run"]: row for row in rows if row["row_type"] == "run"}
    aggregate_rows = {row["method"]: row for row in rows if row["row_type"] == "aggregate"}
    assert len(run_rows) == 6 and set(aggregate_rows) == {"mb-dfkd", "lrwa-mb"}
    for method, method_runs in runs.items():
        for run_dir, accuracies in method_runs:
            row = run_rows[str(run_dir)]
            expected = reference_cells(accuracies)
            assert row["method"] == method and int(row["epochs"]) == len(accuracies)
            assert row["complete"] == str(int(len(accuracies) == EPOCHS))
            assert float(row["acc_max"]) == expected["acc_max"]
            assert row["acc_max_std"] == ""
            for n in PERCENTILES:
                assert float(row[f"p{n}_mean"]) == pytest.approx(expected[n][0], rel=1e-12)
                assert float(row[f"p{n}_var"]) == pytest.approx(expected[n][1], rel=1e-10)
    per_run = [reference_cells(accuracies) for _, accuracies in runs["lrwa-mb"]]
    row = aggregate_rows["lrwa-mb"]
    assert int(row["n_runs"]) == 2
    for n in PERCENTILES:
        variances = [cells[n][1] for cells in per_run]
        assert float(row[f"p{n}_var"]) == pytest.approx(statistics.mean(variances), rel=1e-10)
        assert float(row[f"p{n}_var_std"]) == pytest.approx(statistics.stdev(variances), rel=1e-8)


def test_plot_option_writes_a_png(runs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "figure4.png"
    run_report(_all_dirs(runs), plot=out, as_json=True)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"wrote {out}" in capsys.readouterr().err


def test_runs_from_different_teachers_are_not_averaged(tmp_path: Path, rng: random.Random, capsys) -> None:
    dirs = [
        write_run(tmp_path, "lrwa-mb", seed, [rng.uniform(5, 99) for _ in range(EPOCHS)], teacher_sha256=sha)
        for seed, sha in ((0, "ab" * 32), (1, "cd" * 32), (2, "cd" * 32))
    ]
    report = run_report(dirs)
    assert [len(aggregate.runs) for aggregate in report.aggregates] == [2]
    assert report.markdown.count("## digits · teacher lenet5") == 2
    assert capsys.readouterr().out == report.markdown


def test_unknown_plot_type_is_refused_before_writing(runs, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    with pytest.raises(ConfigError, match=r"figure4\.pgn"):
        run_report(_all_dirs(runs), out_md=out, plot=tmp_path / "figure4.pgn")
    assert not out.exists()


def test_a_run_given_twice_counts_once(runs, capsys) -> None:
    dirs = [str(run_dir) for run_dir, _ in runs["lrwa-mb"]]
    run_report(dirs + [dirs[0] + "/"], as_json=True)
    document = json.loads(capsys.readouterr().out)
    assert len(document["runs"]) == 2
    assert document["aggregates"][0]["n_runs"] == 2


def test_runs_sharing_a_seed_are_labelled_by_their_distinct_seeds(tmp_path: Path, rng: random.Random) -> None:
    dirs = [
        write_run(tmp_path / folder, "mb-dfkd", seed, [rng.uniform(5, 99) for _ in range(EPOCHS)])
        for folder, seed in (("a", 0), ("b", 0), ("c", 3))
    ]
    assert "mb-dfkd (2 runs, 1 seed)" in _markdown_rows(run_report(dirs[:2]).markdown)
    assert "mb-dfkd (3 runs, 2 seeds)" in _markdown_rows(run_report(dirs).markdown)
    assert "mb-dfkd (2 seeds)" in _markdown_rows(run_report([dirs[0], dirs[2]]).markdown)


def test_a_setting_is_labelled_by_the_options_its_method_reads(tmp_path: Path, rng: random.Random) -> None:
    def run(folder: str, method: str, seed: int, lrwa: dict, joint_objective: str) -> Path:
        config = {
            "method": method,
            "lrwa": lrwa,
            "joint": {"objective": joint_objective},
            "schedule": {"epochs": EPOCHS},
        }
        accuracies = [rng.uniform(5, 99) for _ in range(EPOCHS)]
        return write_run(tmp_path / folder, method, seed, accuracies, config=config)

    alpha = rng.uniform(0.01, 0.5)
    dirs = [
        # MB-DFKD never reads the LRWA options: runs recorded with other ones are seeds of one setting.
        *(
            run("mb", "mb-dfkd", seed, {"alpha": rng.uniform(0.01, 0.5), "objective": "paper"}, "official")
            for seed in (0, 1)
        ),
        # LRWA never reads the joint objective; its own objective tells its settings apart.
        *(run(f"paper{seed}", "lrwa-mb", seed, {"alpha": alpha, "objective": "paper"}, "paper") for seed in (0, 1)),
        *(run(f"off{seed}", "lrwa-mb", seed, {"alpha": alpha, "objective": "official"}, "official") for seed in (0, 1)),
        # Recorded before lrwa.objective existed: its section is read, so the missing key sets it apart.
        run("old", "lrwa-mb", 7, {"alpha": alpha}, "paper"),
    ]
    rows = _markdown_rows(run_report(dirs).markdown)
    assert {"mb-dfkd (2 seeds)", "lrwa-mb · lrwa.objective=paper (2 seeds)"} <= set(rows), list(rows)
    assert {"lrwa-mb · lrwa.objective=official (2 seeds)", "lrwa-mb · lrwa.objective=unset (seed 7)"} <= set(rows)
    assert not any("joint." in row or "alpha" in row for row in rows), list(rows)


def test_run_without_epochs_is_an_error(tmp_path: Path, rng: random.Random) -> None:
    run_dir = write_run(tmp_path, "dfkd", 0, [])
    (run_dir / "metrics.jsonl").write_text("")
    with pytest.raises(UserFacingError, match="not finished an epoch"):
        run_report([run_dir])


def test_no_run_directory_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no run directory"):
        run_report([])


def test_unwritable_output_is_one_line(runs, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserFacingError) as error:
        run_report(_all_dirs(runs), out_md=blocker / "table.md")
    message = str(error.value)
    assert f"--out {blocker / 'table.md'} is inside {blocker}, which is a file" in message and "\n" not in message


def test_cli_report_on_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert str(tmp_path) in result.stderr and "config.json" in result.stderr


def test_cli_report_prints_json(runs) -> None:
    result = CliRunner().invoke(cli, ["report", "--json", *_all_dirs(runs)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["runs"]) == 6
