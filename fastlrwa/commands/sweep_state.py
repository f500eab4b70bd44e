"""What a sweep does with a cell's run directory: start it, skip it, resume it, restart it or refuse.

The directory is compared with the cell's resolved config on every key that changes what is computed
(the run-local keys, ``config.schema.RUN_LOCAL_KEYS``, are left out: where the run is written, the device, progress
display, evaluation batching, compilation, a ``--stop-after`` pause, where the data lives):

- NEW: no run files: start it.
- DONE: the same config, and metrics.jsonl holds every epoch: skip it.
- INTERRUPTED: the same config, unfinished, with a checkpoint: ``train --resume`` continues it.
- RESTART: the same config, unfinished, no checkpoint (the run died before its first epoch ended):
  nothing to keep, ``train --force`` starts it again.
- CONFLICT: another configuration, or run files without a readable config.json: never touched.
- BUSY: unfinished, and another process trains in it now (it holds the run's lock, ``trainer.run_lock``): not
  started, reported as busy; the next invocation sees what that process left.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastlrwa.config.schema import RUN_LOCAL_KEYS, TrainConfig, from_dict, to_dict
from fastlrwa.errors import ConfigError
from fastlrwa.run_log.metrics_file import read_run
from fastlrwa.run_log.settings import format_value, setting_of
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.run_lock import lock_holder


class CellState(enum.Enum):
    NEW = "new"
    DONE = "done"
    INTERRUPTED = "interrupted"
    RESTART = "restart"
    CONFLICT = "conflict"
    BUSY = "busy"


@dataclass(frozen=True)
class Inspection:
    state: CellState
    epochs_done: int
    problem: str = ""  # why a CONFLICT is one
    holder: str = ""  # the pid of the process a BUSY run belongs to


def _difference(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The first key on which two configs differ, as "key is A here, B in this sweep"."""
    saved_items, expected_items = dict(setting_of(saved, RUN_LOCAL_KEYS)), dict(setting_of(expected, RUN_LOCAL_KEYS))
    for key in sorted(set(saved_items) | set(expected_items)):
        if saved_items.get(key) != expected_items.get(key):
            return (
                f"{key} is {format_value(saved_items.get(key))} there and {format_value(expected_items.get(key))} "
                "in this sweep"
            )
    return None


def _saved_config(run: RunDir) -> dict[str, Any] | None:
    try:
        saved = json.loads(run.config.read_text(encoding="utf-8"))["config"]
        # Keys added to the config since the run was written take their defaults, as `train --resume` reads them.
        return to_dict(from_dict(TrainConfig, saved))
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


def _epochs_logged(run: RunDir) -> int:
    return read_run(run.root).epochs_logged if run.metrics.is_file() else 0


def inspect_cell(run_dir: Path, expected: TrainConfig) -> Inspection:
    """The state of ``run_dir`` for a cell whose resolved config is ``expected`` (see the module docstring)."""
    run = RunDir(run_dir)
    holder = lock_holder(run_dir)
    if not run.holds_run():
        return Inspection(CellState.BUSY, 0, holder=holder) if holder else Inspection(CellState.NEW, 0)
    saved = _saved_config(run)
    if saved is None:
        return Inspection(CellState.CONFLICT, 0, f"{run.config} is missing or unreadable next to run files")
    difference = _difference(saved, to_dict(expected))
    if difference is not None:
        return Inspection(CellState.CONFLICT, 0, f"it holds another configuration: {difference}")
    epochs = _epochs_logged(run)
    if epochs >= expected.schedule.epochs:
        return Inspection(CellState.DONE, epochs)
    if holder:
        return Inspection(CellState.BUSY, epochs, holder=holder)
    return Inspection(CellState.INTERRUPTED if run.checkpoint.is_file() else CellState.RESTART, epochs)
