"""`fastlrwa sweep` end to end: real `fastlrwa train` processes on tiny digits runs.

The table is checked against the per-epoch accuracies the runs logged, with the paper's definitions
written out here; a second invocation must start nothing; Ctrl-C must leave checkpoints that
`--resume` continues to the end.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastlrwa.cli import cli
from fastlrwa.commands import sweep as sweep_command
from fastlrwa.commands import sweep_state
from fastlrwa.commands.sweep_grid import Grid
from fastlrwa.commands.train import run_train
from fastlrwa.commands.train_argv import TrainArgv
from fastlrwa.config.schema import apply_overrides


def tiny_fixes(teacher: Path, epochs: int) -> list[str]:
    fixes = {
        "teacher.path": str(teacher),
        "generator.latent_dim": 16,
        "generator.width": 8,
        "schedule.epochs": epochs,
        "schedule.iters_per_epoch": 2,
        "schedule.student_steps": 2,
        "schedule.batch_size": 24,
        "replay.slot_size": 8,
        "replay.push_every": 1,
    }
    return [word for key, value in fixes.items() for word in ("--fix", f"{key}={value}")]


def _accuracies(run_dir: Path) -> list[float]:
    return [json.loads(line)["test_accuracy"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _p80_mean(accuracies: list[float]) -> float:
    return statistics.fmean(a for k, a in enumerate(accuracies, start=1) if k > 0.8 * len(accuracies))


def _sweep(args: list[str]):
    return CliRunner().invoke(cli, ["sweep", *args])


def test_two_methods_two_seeds_then_nothing_left_to_do(tmp_path, lenet_teacher) -> None:
    root = tmp_path / "sw"
    args = [
        "--methods",
        "lrwa-mb,mb-dfkd",
        "--seeds",
        "0-1",
        *tiny_fixes(lenet_teacher, 2),
        "--root",
        str(root),
        "--jobs",
        "2",
        "--device",
        "cpu",
    ]
    first = _sweep(args)
    assert first.exit_code == 0, first.output
    assert first.stderr.count(" done    ") == 4 and "0 failed" in first.stderr
    runs = {(method, seed): root / method / f"seed-{seed}" for method in ("lrwa-mb", "mb-dfkd") for seed in (0, 1)}
    for (method, seed), run_dir in runs.items():
        assert len(_accuracies(run_dir)) == 2
        log = (run_dir / "train.log").read_text()
        assert f"fastlrwa train --preset digits --method {method} --seed {seed} --out {run_dir}" in log
        assert "done: " in log  # train's own last line
        config = json.loads((run_dir / "config.json").read_text())["config"]
        assert (config["method"], config["runtime"]["seed"], config["generator"]["width"]) == (method, seed, 8)

    document = json.loads((root / "report.json").read_text())
    aggregates = {entry["method"]: entry for entry in document["aggregates"]}
    assert set(aggregates) == {"lrwa-mb", "mb-dfkd"}
    for method, entry in aggregates.items():
        means = [_p80_mean(_accuracies(runs[(method, seed)])) for seed in (0, 1)]
        assert entry["n_runs"] == 2
        assert entry["percentiles"]["80"]["mean"]["mean"] == pytest.approx(statistics.fmean(means), rel=1e-12)
        assert entry["percentiles"]["80"]["mean"]["std"] == pytest.approx(statistics.stdev(means), rel=1e-9, abs=1e-12)
    [comparison] = document["comparisons"]
    assert (comparison["a"]["label"], comparison["b"]["label"]) == ("lrwa-mb", "mb-dfkd")
    assert all(q["verdict"] for q in comparison["quantities"])
    markdown = (root / "report.md").read_text()
    assert first.stdout == markdown and "| lrwa-mb (2 seeds) |" in markdown
    assert "| lrwa-mb − mb-dfkd | 2 / 2 |" in markdown
    assert (root / "report.csv").read_text().startswith("row_type,run,method,cell,")
    assert (root / "compare.csv").read_text().count("\n") == 1 + 2

    files = {path: path.read_bytes() for run_dir in runs.values() for path in run_dir.iterdir() if path.is_file()}
    again = _sweep(args)
    assert again.exit_code == 0, again.output
    assert "4 already finished, 0 to run" in again.stderr and "started" not in again.stderr
    assert {path: path.read_bytes() for path in files} == files

    changed = _sweep([*args, "--fix", "student.lr=0.01"])
    assert changed.exit_code == 2 and "holds another configuration: student.lr is 0.05 there and 0.01" in changed.output
    assert {path: path.read_bytes() for path in files} == files


def _interrupt_after_first_epoch(run_dir: Path) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("\n") >= 1:
                os.kill(os.getpid(), signal.SIGINT)  # the sweep's Ctrl-C
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def _dfad_two_seeds(root: Path, teacher: Path, seeds: str = "0-1", epochs: int = 2) -> tuple[list[str], Grid]:
    """The arguments of a two-run DFAD sweep on the CPU, and the grid they describe."""
    fixes = tiny_fixes(teacher, epochs)
    args = ["--methods", "dfad", "--seeds", seeds, *fixes, "--root", str(root), "--device", "cpu", "--jobs", "2"]
    grid = Grid.parse(
        preset=None,
        methods="dfad",
        seeds=seeds,
        axes=(),
        root=str(root),
        train_argv=TrainArgv(),
        fixed=tuple(fixes[1::2]),
    )
    return args, grid


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path, lenet_teacher) -> None:
    """A run of the grid paused after 2 of 5 epochs (trained here, in this process) is continued by
    `sweep --resume` in one `train --resume` process; the finished cell next to it is left alone."""
    root, epochs = tmp_path / "sw", 5
    args, grid = _dfad_two_seeds(root, lenet_teacher, seeds="1-2", epochs=epochs)
    paused, finished = grid.cells()
    run_train(apply_overrides(paused.config, {"runtime.stop_after": 2}))
    run_train(finished.config)
    finished_files = {path: path.read_bytes() for path in finished.run_dir.iterdir() if path.is_file()}
    first_two = _accuracies(paused.run_dir)
    assert len(first_two) == 2

    refused = _sweep(args)
    assert refused.exit_code == 2 and refused.output.strip() == (
        f"error: 1 run(s) of this sweep were interrupted (first: {paused.run_dir} after 2/5 epochs); "
        "pass --resume to continue them"
    )

    resumed = _sweep([*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "1 already finished, 1 to run" in resumed.stderr and resumed.stderr.count(" started ") == 1
    lines = [json.loads(line) for line in (paused.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, epochs + 1))
    assert [line["test_accuracy"] for line in lines[:2]] == first_two
    log = (paused.run_dir / "train.log").read_text()
    [header] = [line for line in log.splitlines() if line.startswith("=== fastlrwa sweep")]
    assert f"--method dfad --seed 1 --out {paused.run_dir} " in header and header.endswith(" --no-progress --resume")
    assert f"resuming {paused.run_dir} at epoch 3" in " ".join(log.split())  # train's console may wrap lines
    assert {path: path.read_bytes() for path in finished_files} == finished_files


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, lenet_teacher) -> None:
    root = tmp_path / "sw"
    result = _sweep(
        [
            "--methods",
            "dfad",
            "--seeds",
            "0",
            "--set",
            "student.lr=0.05,1e12",
            *tiny_fixes(lenet_teacher, 2),
            "--root",
            str(root),
            "--device",
            "cpu",
            "--jobs",
            "2",
        ]
    )
    assert result.exit_code == 1
    good, bad = root / "dfad" / "student.lr=0.05" / "seed-0", root / "dfad" / "student.lr=1000000000000.0" / "seed-0"
    [failed] = [line for line in result.stderr.splitlines() if " FAILED " in line]
    assert f"dfad/{bad.parent.name}/seed-0 (exit 3): error: " in failed and "became nan" in failed
    assert failed.endswith(f"(log: {bad / 'train.log'})")
    assert len(_accuracies(good)) == 2 and "| dfad (seed 0) |" in (root / "report.md").read_text()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: 1 of 2 runs failed (logs: {bad / 'train.log'}); fix the cause and continue with: "
        "fastlrwa sweep --preset digits --methods dfad --seeds 0 "
        "--set student.lr=0.05,1000000000000.0"
    )


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path, lenet_teacher) -> None:
    root, epochs = tmp_path / "sw", 40
    args = [
        "--methods",
        "dfad",
        "--seeds",
        "3",
        *tiny_fixes(lenet_teacher, epochs),
        "--root",
        str(root),
        "--device",
        "cpu",
        "--jobs",
        "1",
    ]
    run_dir = root / "dfad" / "seed-3"
    watcher = _interrupt_after_first_epoch(run_dir)
    stopped = _sweep(args)
    watcher.join()
    assert stopped.exit_code == 130, stopped.output
    assert "stopping: 1 run(s) finish their iteration and write a checkpoint" in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: stopped: 1 run(s) stopped at their last checkpoint, 0 not started, 0/1 finished; "
        "continue with: fastlrwa sweep --preset digits --methods dfad --seeds 3 "
    )
    assert last.endswith("--resume")
    logged = len(_accuracies(run_dir))
    assert 1 <= logged < epochs and (run_dir / "checkpoint.pt").is_file()
    assert "continue with: fastlrwa train" in (run_dir / "train.log").read_text()

    refused = _sweep(args)
    assert refused.exit_code == 2 and "pass --resume to continue them" in refused.output

    resumed = _sweep([*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, epochs + 1)
    )
    log = (run_dir / "train.log").read_text()
    assert "resuming " in log and log.count("=== fastlrwa sweep") == 2


def _sweep_while_held(args: list[str], run_dir: Path):
    """The sweep of ``args`` run while another process trains in ``run_dir`` (as far as its lock can tell), and
    that process's pid; the sweep ends busy (75) with no run failed."""
    code = (
        "import sys, time; from pathlib import Path; from fastlrwa.trainer.run_lock import run_dir_lock\n"
        "with run_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        busy = _sweep(args)
    finally:
        holder.kill()
        holder.wait()
    assert busy.exit_code == 75, busy.output
    assert " FAILED " not in busy.stderr
    return busy, holder.pid


# slow: two sweeps and a held run; the default run keeps a run taken as it starts
@pytest.mark.slow
def test_a_run_another_process_holds_is_busy_not_failed_and_the_next_sweep_runs_it(tmp_path, lenet_teacher) -> None:
    """The held run was paused after an epoch (it looks interrupted), so a sweep without --resume that took it
    for an interrupted run would refuse to start."""
    root = tmp_path / "sw"
    args, grid = _dfad_two_seeds(root, lenet_teacher)
    held, free = grid.cells()
    run_train(apply_overrides(held.config, {"runtime.stop_after": 1}))
    busy, holder_pid = _sweep_while_held(args, held.run_dir)
    assert busy.stderr.count("] started ") == 1
    assert f"busy    {held.name}: held by pid {holder_pid}, not started" in busy.stderr
    assert f" done    {free.name} " in busy.stderr and len(_accuracies(free.run_dir)) == 2
    assert len(_accuracies(held.run_dir)) == 1 and not (held.run_dir / "train.log").exists()
    last = busy.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: 1 run(s) busy in other processes, not started here: {held.name} (pid {holder_pid}); 1/2 finished; "
        "once those processes end, continue with: fastlrwa sweep "
    ), last
    # The holder is gone: the run is what it left, an interrupted run, continued by --resume.
    resumed = _sweep([*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.count("] started ") == 1 and len(_accuracies(held.run_dir)) == 2


def test_a_run_taken_by_another_process_as_it_starts_is_busy(tmp_path, lenet_teacher, monkeypatch) -> None:
    """The sweep looks at the lock just before starting a run; a process that takes it in between is seen in
    the run's one-line refusal (here the sweep is made not to look)."""
    root = tmp_path / "sw"
    args, grid = _dfad_two_seeds(root, lenet_teacher)
    held, free = grid.cells()
    monkeypatch.setattr(sweep_state, "lock_holder", lambda run_dir: None)
    monkeypatch.setattr(sweep_command, "lock_holder", lambda run_dir: None)
    busy, holder_pid = _sweep_while_held(args, held.run_dir)
    assert busy.stderr.count("] started ") == 2
    assert f"busy    {held.name}: held by pid {holder_pid}\n" in busy.stderr
    assert "is in use by another fastlrwa process" in (held.run_dir / "train.log").read_text()
    assert len(_accuracies(free.run_dir)) == 2 and not (held.run_dir / "metrics.jsonl").exists()
