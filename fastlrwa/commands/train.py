"""``fastlrwa train``: one distillation run, fresh or resumed, from a resolved config.

Everything a user can get wrong (a flag, the run directory, the teacher file, an unwritable output) is
checked here before torch is imported, so a mistake is answered in about a second; the run itself is
``fastlrwa.commands.distill``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from fastlrwa.commands.teacher import check_teacher_source
from fastlrwa.config.input_space import run_input
from fastlrwa.config.schema import RUN_LOCAL_KEYS, TrainConfig, apply_overrides, from_dict, to_dict
from fastlrwa.config.validate import setting, validate_train_config
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.paths import require_writable_dir
from fastlrwa.trainer.run_dir import RunDir, fresh_run_dir
from fastlrwa.trainer.run_lock import fresh_run_dir_lock, run_dir_lock


def run_train(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    explicit: Iterable[str] = frozenset(),
    flags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a distillation; returns the per-epoch metric records.

    ``explicit``: the config keys the user set (a resume may change only some of them; without
    ``runtime.out`` the run gets a fresh directory); ``flags``: how the command spells each key, for messages.
    Under torchrun every process calls it with the same arguments (see :mod:`fastlrwa.distributed`).
    """
    config, run, base = _checked(config, resume=resume, force=force, explicit=explicit, flags=flags)
    from fastlrwa.commands.distill import distil  # torch and the trainer: only once every check above passed

    # Under torchrun rank 0 alone holds the run directory: it is the only rank that writes into it, and the
    # other ranks take the directory it chose (distil).
    if os.environ.get("RANK", "0") != "0":
        return distil(config, run, resume=resume and run.has_trained())
    if base is not None:
        with fresh_run_dir_lock(base) as run:
            _announce(run)
            return distil(apply_overrides(config, {"runtime.out": str(run.root)}), run, resume=False)
    with run_dir_lock(run.root):
        # Taken after the checks, re-checked under the lock: a run that finished or started meanwhile is seen.
        if resume:
            run.check_resumable()
        elif not force:
            run.check_fresh(to_dict(config), force=False)
        if resume and not run.has_trained():
            # Stopped before its first checkpoint: nothing was trained, the run starts again from its config.json.
            click.echo(f"{run.root} has no checkpoint yet: starting it from the beginning", err=True)
        return distil(config, run, resume=resume and run.has_trained())


def prepare_train(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    explicit: Iterable[str] = frozenset(),
    flags: Mapping[str, str] | None = None,
) -> tuple[TrainConfig, RunDir]:
    """The config a run will use and its directory, after every check that needs no work.

    Without ``--out``, the directory is the one free now; two runs started at once get one each (``run_train``).
    """
    config, run, base = _checked(config, resume=resume, force=force, explicit=explicit, flags=flags)
    if base is not None:
        _announce(run)
    return config, run


def _announce(run: RunDir) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 speaks
        click.echo(f"run directory: {run.root} (choose one with --out)", err=True)


def _checked(
    config: TrainConfig,
    *,
    resume: bool,
    force: bool,
    explicit: Iterable[str],
    flags: Mapping[str, str] | None,
) -> tuple[TrainConfig, RunDir, Path | None]:
    """The config, its run directory and, when the directory is chosen automatically, the name it is chosen
    from (``runs/NAME``). Every rank of a torchrun makes them on the same files before any rank writes, so
    all pass or all fail."""
    explicit = set(explicit)
    base = None
    if "runtime.out" not in explicit:
        if resume:
            raise ConfigError("--resume needs --out RUN, the run directory to continue")
        if force:
            raise ConfigError(
                "--force replaces the run in an --out you name; without --out every run gets a fresh directory"
            )
        base = Path(config.runtime.out)
        config = apply_overrides(config, {"runtime.out": str(fresh_run_dir(base).root)})
    run = RunDir(Path(config.runtime.out))
    if resume:
        run.check_resumable()
        config = _resumed_config(run, config, explicit, flags)
    validate_train_config(config, flags)
    if not resume:
        run.check_fresh(to_dict(config), force=force)
    require_writable_dir(run.root, "--out")
    check_teacher_source(config.teacher, run_input(config.data, config.teacher))
    return config, run, base


def _saved_config(run: RunDir) -> dict[str, Any]:
    """The config a resume continues: its checkpoint's, or config.json's for a run stopped before its first."""
    if not run.has_trained():
        return run.saved_config()
    import torch  # only a resume reads a checkpoint here

    try:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
        return state["config"]
    except Exception:  # torch raises many types for a damaged file
        raise CheckpointError(f"{run.checkpoint} cannot be read: it is damaged; start afresh with --force") from None


def _resumed_config(
    run: RunDir, requested: TrainConfig, explicit: set[str], flags: Mapping[str, str] | None
) -> TrainConfig:
    """The run's own config, with only the overrides that are safe on resume taken from the command line: the
    run-local ones (``Flag.run_local``), which do not alter what has been computed so far. The epochs are not
    among them: the learning-rate schedule spans the epochs set at the start (split a run with --stop-after)."""
    saved = from_dict(TrainConfig, _saved_config(run))
    requested_values, saved_values = to_dict(requested), to_dict(saved)
    changes: dict[str, Any] = {}
    for key in sorted(explicit):
        head, _, leaf = key.partition(".")
        value = requested_values[head][leaf] if leaf else requested_values[head]
        current = saved_values[head][leaf] if leaf else saved_values[head]
        if value == current:
            continue
        if key not in RUN_LOCAL_KEYS:
            why = (
                (
                    " (the learning-rate schedule spans the epochs the run started with; to split a run into "
                    "parts, start it with --stop-after)"
                )
                if key == "schedule.epochs"
                else ""
            )
            changeable = ", ".join(sorted((flags or {}).get(k, k) for k in RUN_LOCAL_KEYS))
            raise ConfigError(
                f"--resume continues the run as it was configured: {setting(key, current, flags)} cannot change to "
                f"{value!r}{why}; changeable on resume: {changeable}"
            )
        changes[key] = value
    # --stop-after pauses one invocation: a resumed run goes on to the end unless it is given again.
    changes["runtime.stop_after"] = requested.runtime.stop_after
    return apply_overrides(saved, changes)
