"""``fastlrwa train``: one distillation run, fresh or resumed, from a resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from fastlrwa import __version__
from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.config.schema import TrainConfig, apply_overrides, from_dict, to_dict
from fastlrwa.config.validate import validate_train_config
from fastlrwa.data import dataset_info, evaluate
from fastlrwa.errors import CheckpointError, ConfigError, UserFacingError
from fastlrwa.metrics import run_stats
from fastlrwa.distributed import DistributedContext
from fastlrwa.progress import EpochProgress, epoch_progress
from fastlrwa.runtime import environment_versions, seed_everything
from fastlrwa.trainer.build import RunParts, build_run
from fastlrwa.trainer.loop import StopRequested, Trainer
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.teacher import resolve_teacher_path

# Settings a resumed run may change: they do not alter what has been computed so far.
RESUMABLE_OVERRIDES = frozenset({
    "schedule.epochs", "runtime.out", "runtime.device", "runtime.progress", "runtime.eval_batch_size",
    "runtime.compile", "runtime.stop_after", "teacher.trust_pickle",
})


class Interrupted(UserFacingError):
    exit_code = 130


def _saved_config(run: RunDir) -> dict[str, Any]:
    try:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
        return state["config"]
    except Exception:  # torch raises many types for a damaged file
        raise CheckpointError(f"{run.checkpoint} cannot be read: it is damaged; start afresh with --force") from None


def _resumed_config(run: RunDir, requested: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The run's own config, with only the overrides that are safe on resume taken from the command line."""
    saved = from_dict(TrainConfig, _saved_config(run))
    requested_values = to_dict(requested)
    changes: dict[str, Any] = {}
    for key in sorted(explicit):
        head, _, leaf = key.partition(".")
        value = requested_values[head][leaf] if leaf else requested_values[head]
        current = to_dict(saved)[head][leaf] if leaf else to_dict(saved)[head]
        if value == current:
            continue
        if key not in RESUMABLE_OVERRIDES:
            raise ConfigError(
                f"--resume continues the run as it was configured; '{key}' was {current!r} and cannot change to "
                f"{value!r} (changeable on resume: {', '.join(sorted(RESUMABLE_OVERRIDES))})"
            )
        changes[key] = value
    # --stop-after pauses one invocation: a resumed run goes on to the end unless it is given again.
    changes["runtime.stop_after"] = requested.runtime.stop_after
    return apply_overrides(saved, changes)


def _agreed_teacher_path(config: TrainConfig, context: DistributedContext) -> Path:
    """The teacher file; rank 0 alone resolves it (pretraining it on first use) while the other ranks wait."""
    with context.fail_together():
        path = resolve_teacher_path(
            config.teacher, dataset_info(config.data.dataset), data_root=config.data.data_root,
            seed=config.runtime.seed, progress=config.runtime.progress, log=lambda line: click.echo(line, err=True),
        ) if context.is_main else None
    return context.broadcast_object(path)


def run_train(config: TrainConfig, *, resume: bool = False, force: bool = False,
              explicit: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Run (or resume) a distillation; returns the per-epoch metric records.

    Under torchrun every process calls it with the same arguments (see :mod:`fastlrwa.distributed`).
    """
    run = RunDir(Path(config.runtime.out))
    if resume:
        run.check_resumable()
        config = _resumed_config(run, config, set(explicit))
    validate_train_config(config)
    if not resume:
        run.check_fresh(to_dict(config), force=force)
    # Every rank has made the checks above on the same files: no rank writes into the run directory before
    # all have agreed on the teacher below, so they all pass or all fail with the same message.
    with DistributedContext.from_environment(config.runtime.device) as context:
        return _train(config, run, context, resume=resume)


def _train(config: TrainConfig, run: RunDir, context: DistributedContext, *, resume: bool) -> list[dict[str, Any]]:
    # Before the run's progress bar exists: a first-use teacher pretraining shows a bar of its own.
    teacher_path = _agreed_teacher_path(config, context)
    # Seeded after the teacher: a run is the same whether its teacher was cached or just trained. The same
    # seed on every rank makes the models start identical; each rank's own stream is seeded in build_run.
    seed_everything(config.runtime.seed)

    with epoch_progress(config.runtime.progress, silent=not context.is_main) as progress:
        parts = build_run(config, teacher_path, context)
        trainer = Trainer(parts, run, progress)
        if resume:
            with context.fail_together():
                trainer.load_checkpoint()
            progress.log(f"resuming {run.root} at epoch {trainer.epoch + 1} (iteration {trainer.iteration})")
        elif context.is_main:
            _start_run_dir(run, parts, trainer.teacher.sha256, progress)
        try:
            history = trainer.fit()
        except StopRequested:
            raise Interrupted(
                f"stopped at epoch {trainer.epoch + 1}, iteration {trainer.iteration}; checkpoint saved in "
                f"{run.checkpoint}; continue with: {_command(context)} --out {run.root} --resume"
            ) from None

    accuracies = [record["test_accuracy"] for record in history]
    if accuracies and len(accuracies) < config.schedule.epochs:
        progress.log(f"paused after epoch {len(accuracies)}/{config.schedule.epochs} (--stop-after); continue with: "
                     f"{_command(context)} --out {run.root} --resume")
    elif accuracies:
        stats = run_stats(accuracies)
        cells = "  ".join(f">{n}%: {s.mean:.2f} (var {s.var:.2f})" for n, s in stats.percentiles.items())
        progress.log(f"done: {run.root}  final {accuracies[-1]:.2f}%  best {stats.acc_max:.2f}%  {cells}")
    return history


def _command(context: DistributedContext) -> str:
    """How to run this training again, for the 'continue with' hints."""
    if context.is_distributed:
        return f"torchrun --nproc_per_node {context.world_size} -m fastlrwa train"
    return "fastlrwa train"


def _start_run_dir(run: RunDir, parts: RunParts, teacher_sha256: str, progress: EpochProgress) -> None:
    """Rank 0: clear the previous run's files and write config.json for this one."""
    config = parts.config
    run.clear()
    teacher = evaluate(parts.teacher, parts.test_set, batch_size=config.runtime.eval_batch_size)
    progress.log(f"{config.method}: {parts.teacher_meta.arch} teacher ({teacher.accuracy:.2f}% on "
                 f"{parts.info.name}) -> {config.student.arch} student, {config.schedule.epochs} epochs"
                 + (f", {parts.context.world_size} processes" if parts.context.is_distributed else ""))
    atomic_write_json(run.config, {
        "fastlrwa_version": __version__,
        "method": config.method,
        "dataset": parts.info.name,
        "student": config.student.arch,
        "teacher_arch": parts.teacher_meta.arch,
        "teacher_path": str(parts.teacher_path),
        "teacher_sha256": teacher_sha256,
        "teacher_accuracy": teacher.accuracy,
        "seed": config.runtime.seed,
        "epochs": config.schedule.epochs,
        "world_size": parts.context.world_size,
        "config": to_dict(config),
        "versions": environment_versions(parts.device),
        "device": str(parts.device),
    })
