"""``fastlrwa sweep``: a grid of methods x seeds x ``--set`` overrides as parallel ``fastlrwa train`` runs.

The story of one invocation:
1. the grid (``sweep_grid``) gives every run its directory and resolved config; a bad key or value
   fails here, before anything starts;
2. each directory is inspected (``sweep_state``): finished runs are skipped, interrupted ones resumed
   with ``--resume``, and a directory holding another configuration stops the sweep with one line;
3. the teachers the runs need are resolved once, here (a first-use teacher is trained once, not by
   every run at the same time);
4. the runs go through a pool of ``--jobs`` processes (``sweep_pool``), each logging to
   ``RUN/train.log``; a failed run is reported with its log and the others go on; a run another process
   trains (a person's ``train --resume``, a SLURM task) is busy, neither started nor a failure; Ctrl-C stops
   them with checkpoints and says how to continue;
5. Table 1 of the finished runs, with the differences between settings and their intervals, is
   written to ROOT/report.md (also printed), report.csv, compare.csv and report.json.

``--dry-run`` prints the ``fastlrwa train`` command of every run still to do, one a line: the lines of
a SLURM array (README).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click

from fastlrwa.atomic_io import atomic_write_json, atomic_write_text
from fastlrwa.commands.sweep_grid import Cell, Grid
from fastlrwa.commands.sweep_pool import DevicePlan, Finished, Job, Pool, visible_gpus
from fastlrwa.commands.sweep_state import CellState, Inspection, inspect_cell
from fastlrwa.commands.train_argv import TrainArgv
from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.report.build import build_report, read_runs
from fastlrwa.report.table import run_stats
from fastlrwa.run_log.metrics_file import read_run
from fastlrwa.trainer.run_lock import IN_USE, lock_holder

LOG_FILE = "train.log"
LOCK_FILE = ".sweep.lock"
REPORT_FILES = {"markdown": "report.md", "csv": "report.csv", "compare_csv": "compare.csv", "json": "report.json"}


class SweepInterrupted(UserFacingError):
    exit_code = 130


class SweepFailed(UserFacingError):
    exit_code = 1


class SweepBusy(UserFacingError):
    """Every run this sweep could start has finished, but some were busy in other processes: try again later
    (``EX_TEMPFAIL`` of sysexits.h)."""

    exit_code = 75


@dataclass(frozen=True)
class SweepOptions:
    """How the runs are executed (the grid says what runs)."""

    jobs: int | None = None
    threads: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = False
    dry_run: bool = False
    compare: str | None = None


def _say(line: str) -> None:
    click.echo(line, err=True)


def device_plan(device: str, *, jobs: int | None, threads: int | None) -> tuple[DevicePlan, int]:
    """Where the runs train and how many run at once (defaults: one per core on CPU, one per visible GPU)."""
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be >= 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cuda = False
    if device != "cpu":
        import torch

        cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is visible here; use --device cpu")
    if cuda:
        gpus = visible_gpus(os.environ, torch.cuda.device_count())
        if not gpus:
            raise ConfigError("--device cuda: CUDA_VISIBLE_DEVICES lists no device; set it or use --device cpu")
        jobs = jobs or len(gpus)
        # The CPU side of a GPU run (data, Python) gets an equal share of the cores.
        return DevicePlan("cuda", threads or max(1, cores // jobs), gpus), jobs
    threads = threads or 1
    return DevicePlan("cpu", threads), jobs or max(1, cores // threads)


def _plan(cells: Sequence[Cell], resume: bool) -> list[tuple[Cell, Inspection]]:
    """Every cell's state; a conflicting directory, or an interrupted run without --resume, is refused here."""
    inspected = [(cell, inspect_cell(cell.run_dir, cell.config)) for cell in cells]
    conflicts = [(cell, state) for cell, state in inspected if state.state is CellState.CONFLICT]
    if conflicts:
        cell, state = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ConfigError(
            f"{cell.run_dir} is not this sweep's run: {state.problem}{more}; nothing was started: "
            "choose another --root, or move that directory away"
        )
    # A busy run is not interrupted: another process trains it now, and this sweep leaves it alone.
    interrupted = [(cell, state) for cell, state in inspected if state.state is CellState.INTERRUPTED]
    if interrupted and not resume:
        cell, state = interrupted[0]
        raise ConfigError(
            f"{len(interrupted)} run(s) of this sweep were interrupted (first: {cell.run_dir} after "
            f"{state.epochs_done}/{cell.config.schedule.epochs} epochs); pass --resume to continue them"
        )
    return inspected


def _extra_arguments(state: CellState) -> tuple[str, ...]:
    return {CellState.INTERRUPTED: ("--resume",), CellState.RESTART: ("--force",)}.get(state, ())


@contextmanager
def _sweep_lock(root: Path) -> Iterator[None]:
    """One sweep at a time on a root: two would start the same runs."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_FILE, "a+")
    except OSError as error:
        raise ConfigError(f"cannot write to {root}: {error.strerror}; choose a writable --root") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another fastlrwa sweep is running on {root}; wait for it to end or choose another --root"
            ) from None
        yield


def _resolve_teachers(cells: Sequence[Cell]) -> None:
    """Make every teacher the runs need exist before they start (a missing cached one is trained once, here)."""
    from fastlrwa.commands.teacher import resolve_teacher_path
    from fastlrwa.config.input_space import run_input

    seen = set()
    for cell in cells:
        config = cell.config
        key = (config.data.dataset, config.teacher.path, config.teacher.arch, config.data.data_root)
        if key in seen:
            continue
        seen.add(key)
        resolve_teacher_path(
            config.teacher,
            run_input(config.data, config.teacher),
            data_root=config.data.data_root,
            seed=config.runtime.seed,
            progress=False,
            log=_say,
        )


class _Progress:
    """One line per event on stderr: which runs are running, done, failed and busy."""

    def __init__(self, total: int, skipped: int) -> None:
        self.total = total
        self.done = skipped
        self.failed: list[tuple[Cell, Finished]] = []
        self.busy: list[tuple[Cell, str]] = []  # (cell, the pid that holds it)
        self.stopped: list[Cell] = []
        self.paused: list[Cell] = []
        self.running = 0

    def _counts(self) -> str:
        busy = f", {len(self.busy)} busy" if self.busy else ""
        return f"[{self.done}/{self.total} done, {self.running} running, {len(self.failed)} failed{busy}]"

    def found_busy(self, cell: Cell, holder: str) -> None:
        self.busy.append((cell, holder))
        _say(f"{self._counts()} busy    {cell.name}: held by pid {holder}, not started")

    def ready(self, job: Job) -> bool:
        """Whether the cell is still free just before its run starts (another process may have taken it)."""
        holder = lock_holder(job.tag.run_dir)
        if holder is not None:
            self.found_busy(job.tag, holder)
        return holder is None

    def started(self, job: Job, gpu: str | None) -> None:
        self.running += 1
        where = f" on GPU {gpu}" if gpu is not None else ""
        _say(f"{self._counts()} started {job.tag.name}{where}  (log: {job.log_path})")

    def finished(self, finished: Finished) -> None:
        self.running -= 1
        cell: Cell = finished.job.tag
        state = _state_after_run(cell)
        if finished.returncode == 0 and state.state is CellState.DONE:
            self.done += 1
            _say(f"{self._counts()} done    {cell.name} in {finished.seconds:.0f} s: {_result_line(cell)}")
        elif finished.returncode == 0 and state.state is CellState.INTERRUPTED:  # --fix runtime.stop_after=N
            self.paused.append(cell)
            _say(
                f"{self._counts()} paused  {cell.name} after {state.epochs_done}/{cell.config.schedule.epochs} "
                "epochs (--stop-after)"
            )
        elif finished.stopped:
            self.stopped.append(cell)
            _say(f"{self._counts()} stopped {cell.name}")
        elif holder := _refused_as_busy(finished.job) or state.holder:  # taken between ready() and the start
            self.busy.append((cell, holder))
            _say(f"{self._counts()} busy    {cell.name}: held by pid {holder}")
        else:
            self.failed.append((cell, finished))
            reason = state.problem or _last_error(finished.job)
            _say(
                f"{self._counts()} FAILED  {cell.name} (exit {finished.returncode}): {reason}  "
                f"(log: {finished.job.log_path})"
            )

    def stopping(self, signals: int, asked: int) -> None:
        if signals == 1:
            _say(
                f"stopping: {asked} run(s) finish their iteration and write a checkpoint; no new run starts "
                "(Ctrl-C again to stop them at once)"
            )
        else:
            _say(f"stopping {asked} run(s) at once; their last checkpoint is kept")


def _state_after_run(cell: Cell) -> Inspection:
    """The cell's state after its process ended; a log the run left unreadable makes it a failure, not a crash."""
    try:
        return inspect_cell(cell.run_dir, cell.config)
    except UserFacingError as error:
        return Inspection(CellState.CONFLICT, 0, str(error))


def _complete(cell: Cell) -> bool:
    return inspect_cell(cell.run_dir, cell.config).state is CellState.DONE


def _result_line(cell: Cell) -> str:
    record = read_run(cell.run_dir)
    if not record.accuracy_measured:
        heldout = record.final_heldout_agreement
        return "accuracy not measured" + (f", agree_heldout {heldout:.4f}" if heldout is not None else "")
    accuracies = record.accuracies
    return f"final {accuracies[-1]:.2f}%, >80th μ {run_stats(accuracies).percentiles[80].mean:.2f}"


def _refused_as_busy(job: Job) -> str | None:
    """The holder's pid when the run ended refusing a directory another process holds (its one line)."""
    line = _last_error(job)
    found = re.search(r"\(pid (\w+)\)", line) if IN_USE in line else None
    return found.group(1) if found else None


def _busy_line(busy: Sequence[tuple[Cell, str]]) -> str:
    named = ", ".join(f"{cell.name} (pid {holder})" for cell, holder in busy[:5]) + (" ..." if len(busy) > 5 else "")
    return f"{len(busy)} run(s) busy in other processes, not started here: {named}"


def _last_error(job: Job) -> str:
    """The last non-empty line of a run's log (``train`` ends with its ``error: ...`` line)."""
    try:
        text = job.log_path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "no output"


def _header(argv: Sequence[str]) -> str:
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"\n=== fastlrwa sweep {stamp}: {shlex.join(argv)}\n"


def _write_report(grid: Grid, cells: Sequence[Cell], compare: str | None, out: IO[str]) -> None:
    finished = [cell.run_dir for cell in cells if _complete(cell)]
    if not finished:
        _say("no finished run to report yet")
        return
    try:
        report = build_report(read_runs(finished), compare=compare)
    except ConfigError as error:  # e.g. a --compare that matches nothing yet: the runs are safe, the table waits
        _say(f"no table written: {error}")
        return
    files = {name: grid.root / file for name, file in REPORT_FILES.items()}
    atomic_write_text(files["markdown"], report.markdown)
    atomic_write_text(files["csv"], report.csv)
    atomic_write_text(files["compare_csv"], report.compare_csv)
    atomic_write_json(files["json"], report.document)
    out.write(report.markdown)
    depth = "*/*/seed-*" if grid.axes else "*/seed-*"
    _say(
        f"wrote {', '.join(str(path) for path in files.values())} ({len(finished)} finished runs); "
        f"the same table: fastlrwa report {grid.root}/{depth}"
    )


def run_sweep(grid: Grid, options: SweepOptions, train_argv: TrainArgv, *, out: IO[str] | None = None) -> None:
    """Run (or continue) the sweep; see the module docstring. Raises ``SweepFailed`` when a run failed,
    ``SweepInterrupted`` on Ctrl-C and ``SweepBusy`` when runs were busy in other processes, after writing the
    table of the runs finished so far."""
    out = out or sys.stdout
    cells = grid.cells()
    inspected = _plan(cells, options.resume)
    busy = [(cell, state.holder) for cell, state in inspected if state.state is CellState.BUSY]
    todo = [(cell, state) for cell, state in inspected if state.state not in (CellState.DONE, CellState.BUSY)]
    commands = {
        cell.run_dir: grid.train_command(cell, train_argv, *_extra_arguments(state.state)) for cell, state in todo
    }
    skipped = len(cells) - len(todo) - len(busy)
    if options.dry_run:
        _say(
            f"sweep {grid.root}: {len(cells)} runs, {skipped} finished, {len(todo)} to run "
            f"({sum(state.state is CellState.INTERRUPTED for _, state in todo)} to resume)"
            + (f"; {_busy_line(busy)}" if busy else "")
        )
        for cell, _ in todo:
            out.write(shlex.join(["fastlrwa", *commands[cell.run_dir]]) + "\n")
        out.flush()
        return
    plan, jobs = device_plan(options.device, jobs=options.jobs, threads=options.threads)
    continue_with = grid.command_line(
        jobs=options.jobs, threads=options.threads, device=options.device, compare=options.compare, resume=True
    )
    with _sweep_lock(grid.root):
        where = f"cpu ({plan.threads} thread(s) each)" if plan.kind == "cpu" else f"GPUs {', '.join(plan.gpus)}"
        _say(
            f"sweep {grid.root}: {len(cells)} runs ({len(grid.methods)} methods x {len(grid.value_cells())} cells x "
            f"{len(grid.seeds)} seeds); {skipped} already finished, {len(todo)} to run, {jobs} at a time on {where}"
        )
        progress = _Progress(len(cells), skipped)
        for cell, holder in busy:
            progress.found_busy(cell, holder)
        if todo:
            _resolve_teachers([cell for cell, _ in todo])
        pool = Pool(
            jobs,
            plan,
            on_start=progress.started,
            on_finish=progress.finished,
            on_stop=progress.stopping,
            ready=progress.ready,
        )
        program = [sys.executable, "-m", "fastlrwa"]
        never_started = pool.run(
            [
                Job(
                    [*program, *commands[cell.run_dir], "--device", plan.kind],
                    cell.run_dir / LOG_FILE,
                    cell,
                    _header(["fastlrwa", *commands[cell.run_dir]]),
                )
                for cell, _ in todo
            ]
        )
        _write_report(grid, cells, options.compare, out)
    busy_note = f"; {_busy_line(progress.busy)}" if progress.busy else ""
    if pool.stop_requests:
        raise SweepInterrupted(
            f"stopped: {len(progress.stopped)} run(s) stopped at their last checkpoint, "
            f"{len(never_started)} not started, {progress.done}/{len(cells)} finished{busy_note}; "
            f"continue with: {continue_with}"
        )
    if progress.failed:
        logs = "; ".join(str(finished.job.log_path) for _, finished in progress.failed[:3])
        raise SweepFailed(
            f"{len(progress.failed)} of {len(cells)} runs failed (logs: {logs}"
            f"{' ...' if len(progress.failed) > 3 else ''}){busy_note}; fix the cause and continue with: "
            f"{continue_with} (finished runs are skipped)"
        )
    if progress.busy:
        raise SweepBusy(
            f"{_busy_line(progress.busy)}; {progress.done}/{len(cells)} finished; once those processes end, "
            f"continue with: {continue_with} (finished runs are skipped)"
        )
    if progress.paused:
        _say(f"{len(progress.paused)} run(s) paused by --stop-after; continue with: {continue_with}")
