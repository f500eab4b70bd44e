"""The run of ``fastlrwa train`` once its config and run directory have been checked (``commands.train``):
the teacher, the parts, the loop, and the lines the user reads."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from fastlrwa import __version__
from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.commands.teacher import cached_teacher_hint, resolve_teacher_path
from fastlrwa.config.input_space import run_input
from fastlrwa.config.schema import TrainConfig, apply_overrides, to_dict
from fastlrwa.data import evaluate
from fastlrwa.distributed import DistributedContext
from fastlrwa.errors import CheckpointError
from fastlrwa.models.foreign_teacher import ForeignTeacher
from fastlrwa.progress import EpochProgress, epoch_progress
from fastlrwa.report.table import run_stats
from fastlrwa.runtime import environment_versions, seed_everything
from fastlrwa.trainer.build import RunParts, build_run
from fastlrwa.trainer.loop import Trainer
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.stop_signals import StoppedAgain, StoppedAtOnce, StopRequested, stop_error, stop_name
from fastlrwa.trainer.write_guard import guarded_write


def distil(config: TrainConfig, run: RunDir, *, resume: bool) -> list[dict[str, Any]]:
    """Train (or resume) the run in ``run``; returns the per-epoch metric records."""
    with _stopped_while_loading(run, resume=resume):
        context = DistributedContext.from_environment(config.runtime.device)
    # No rank writes into the run directory before all have agreed on the teacher below, so they all pass
    # or all fail with the same message.
    with context:
        with _stopped_while_loading(run, resume=resume):
            config, run = _agreed_run_dir(config, run, context)
            # Before the run's progress bar exists: a first-use teacher pretraining shows a bar of its own.
            teacher_path = _agreed_teacher_path(config, context)
        return _train(config, run, context, teacher_path, resume=resume)


@contextmanager
def _stopped_while_loading(run: RunDir, *, resume: bool) -> Iterator[None]:
    """A Ctrl-C or SIGTERM before the training loop takes the signals over (data, teacher, building, config.json)
    stops at once: nothing has been trained. A fresh run has written its config.json at most, which the same
    command, or --resume, starts again from; the lock is given back on the way out."""
    try:
        yield
    except StoppedAgain:
        raise
    except StoppedAtOnce as stop:
        kept = f"its checkpoint {run.checkpoint} is kept as it was" if resume else "nothing was trained yet"
        raise stop_error(stop)(
            f"stopped by {stop_name(stop)} while loading, before the first iteration; {kept}; "
            "run the same command again to " + ("continue it" if resume else "start it")
        ) from None


def _agreed_run_dir(config: TrainConfig, run: RunDir, context: DistributedContext) -> tuple[TrainConfig, RunDir]:
    """Rank 0's run directory on every rank. Rank 0 chose it and holds it; a directory chosen automatically can
    differ on another rank, which looked without the lock (a candidate another job had just taken looks free)."""
    out = context.broadcast_object(config.runtime.out)
    if out == config.runtime.out:
        return config, run
    return apply_overrides(config, {"runtime.out": out}), RunDir(Path(out))


def _agreed_teacher_path(config: TrainConfig, context: DistributedContext) -> Path:
    """The teacher file; rank 0 alone resolves it (pretraining it on first use) while the other ranks wait."""
    with context.fail_together():
        path = (
            resolve_teacher_path(
                config.teacher,
                run_input(config.data, config.teacher),
                data_root=config.data.data_root,
                seed=config.runtime.seed,
                progress=config.runtime.progress,
                log=lambda line: click.echo(line, err=True),
            )
            if context.is_main
            else None
        )
    return context.broadcast_object(path)


def _build(config: TrainConfig, teacher_path: Path, context: DistributedContext) -> RunParts:
    try:
        return build_run(config, teacher_path, context)
    except CheckpointError as error:
        hint = cached_teacher_hint(config.teacher, teacher_path)
        if hint is None:
            raise
        raise CheckpointError(f"{error}; {hint}") from None


def _ready_trainer(
    config: TrainConfig,
    run: RunDir,
    context: DistributedContext,
    teacher_path: Path,
    progress: EpochProgress,
    *,
    resume: bool,
) -> Trainer:
    """The trainer at the run's start, or where its checkpoint left it."""
    parts = _build(config, teacher_path, context)
    trainer = Trainer(parts, run, progress)
    if resume:
        with context.fail_together():
            trainer.load_checkpoint()
        if trainer.epoch >= config.schedule.epochs:
            progress.log(
                f"{run.root} has finished all {config.schedule.epochs} epochs: nothing to train "
                f"(see `fastlrwa report {run.root}`)"
            )
        else:
            progress.log(f"resuming {run.root} at epoch {trainer.epoch + 1} (iteration {trainer.iteration})")
    elif context.is_main:
        _start_run_dir(run, parts, trainer.teacher.sha256, progress)
    return trainer


def _train(
    config: TrainConfig, run: RunDir, context: DistributedContext, teacher_path: Path, *, resume: bool
) -> list[dict[str, Any]]:
    # Seeded after the teacher: a run is the same whether its teacher was cached or just trained. The same
    # seed on every rank makes the models start identical; each rank's own stream is seeded in build_run.
    seed_everything(config.runtime.seed)

    with epoch_progress(config.runtime.progress, silent=not context.is_main) as progress:
        try:
            # The loop takes the signals over as it starts: a first one before that is a stop while loading.
            with _stopped_while_loading(run, resume=resume):
                trainer = _ready_trainer(config, run, context, teacher_path, progress, resume=resume)
                history = trainer.fit()
        except StopRequested as stop:
            raise stop_error(stop)(
                f"stopped by {stop} at epoch {trainer.epoch + 1}, iteration {trainer.iteration}; checkpoint saved in "
                f"{run.checkpoint}; continue with: {_command(context)} --out {run.root} --resume"
            ) from None
        except StoppedAgain as stop:
            again = (
                f"continue with: {_command(context)} --out {run.root} --resume"
                if run.checkpoint.exists()
                else "start it again"
            )
            raise stop_error(stop)(
                f"stopped at once by a second {stop}; {trainer.kept_checkpoint()}; {again}"
            ) from None

    if history and len(history) < config.schedule.epochs:
        progress.log(
            f"paused after epoch {len(history)}/{config.schedule.epochs} (--stop-after); continue with: "
            f"{_command(context)} --out {run.root} --resume"
        )
    elif history:
        progress.log(f"done: {run.root}  {_summary(history)}")
    return history


def _summary(history: list[dict[str, Any]]) -> str:
    """The finished run in one line: its accuracy over the epochs, or, with no test data, that accuracy was not
    measured; and its last agreement on the held-out generated samples."""
    heldout = f"agree_heldout {history[-1]['agree_heldout']:.4f}" if "agree_heldout" in history[-1] else ""
    if "test_accuracy" not in history[-1]:
        return f"accuracy not measured (no test data)  {heldout}".rstrip()
    stats = run_stats([record["test_accuracy"] for record in history])
    cells = "  ".join(f">{n}%: {s.mean:.2f} (var {s.var:.2f})" for n, s in stats.percentiles.items())
    return f"final {history[-1]['test_accuracy']:.2f}%  best {stats.acc_max:.2f}%  {cells}  {heldout}".rstrip()


def _command(context: DistributedContext) -> str:
    """How to run this training again, for the 'continue with' hints."""
    if context.is_distributed:
        return f"torchrun --nproc_per_node {context.world_size} -m fastlrwa train"
    return "fastlrwa train"


def _teacher_note(teacher: object) -> str:
    """How a teacher from outside fastlrwa runs (a TorchScript one converted or not), for the run's first line."""
    return f", {teacher.note}" if isinstance(teacher, ForeignTeacher) and teacher.note else ""


def _start_run_dir(run: RunDir, parts: RunParts, teacher_sha256: str, progress: EpochProgress) -> None:
    """Rank 0: clear the previous run's files and write config.json for this one."""
    config = parts.config
    run.clear()
    if parts.test_set is not None:
        teacher_accuracy = evaluate(parts.teacher, parts.test_set, batch_size=config.runtime.eval_batch_size).accuracy
        measured = f"{teacher_accuracy:.2f}% on {parts.info.name}"
    else:
        teacher_accuracy, measured = None, "no test data: accuracy not measured"
    progress.log(
        f"{config.method}: {parts.teacher_meta.arch} teacher{_teacher_note(parts.teacher)} ({measured}) -> "
        f"{config.student.arch} student, "
        f"{config.schedule.epochs} epochs"
        + (f", {parts.context.world_size} processes" if parts.context.is_distributed else "")
    )
    if parts.test_set is None:
        progress.log(
            "the student is measured by its agreement with the teacher on held-out generated samples "
            "(agree_heldout); pass --test-data DIR or FILE.npz to measure its accuracy"
        )
    with guarded_write(run.config, "nothing of this run was written yet", "run the same command again"):
        _write_config(run, parts, teacher_sha256, teacher_accuracy)


def _write_config(run: RunDir, parts: RunParts, teacher_sha256: str, teacher_accuracy: float | None) -> None:
    config = parts.config
    atomic_write_json(
        run.config,
        {
            "fastlrwa_version": __version__,
            "method": config.method,
            "dataset": parts.info.name,
            "student": config.student.arch,
            "teacher_arch": parts.teacher_meta.arch,
            "teacher_path": str(parts.teacher_path),
            "teacher_sha256": teacher_sha256,
            "teacher_accuracy": teacher_accuracy,
            "seed": config.runtime.seed,
            "epochs": config.schedule.epochs,
            "world_size": parts.context.world_size,
            "config": to_dict(config),
            "versions": environment_versions(parts.device),
            "device": str(parts.device),
        },
    )
