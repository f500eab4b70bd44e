"""The files of a run directory, and the rule that a run is never overwritten by accident.

An ``--out`` the user names is protected (``--resume`` or ``--force``); without one, a run takes the
first of ``runs/NAME``, ``runs/NAME-2``, ``runs/NAME-3``... that holds no run and that no other process holds
(``run_lock.fresh_run_dir_lock``), so a command can be run twice, or twice at once.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fastlrwa.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def student(self) -> Path:
        return self.root / "student.pt"

    @property
    def impressions(self) -> Path:
        """ZSKD's data impressions, synthesised once per run."""
        return self.root / "impressions.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    def holds_run(self) -> bool:
        return self.config.exists() or self.checkpoint.exists() or self.metrics.exists()

    def saved_config(self) -> dict | None:
        try:
            return json.loads(self.config.read_text())["config"]
        except (OSError, ValueError, KeyError):
            return None

    def is_free(self) -> bool:
        """Nothing is in the way of a new run here: no file of that name, no run's files inside."""
        return not self.root.exists() or (self.root.is_dir() and not self.holds_run())

    def has_trained(self) -> bool:
        """Whether a checkpoint keeps anything trained here; a run stopped before its first checkpoint (a signal,
        a kill or a full disk between config.json and the end of the first iteration) has only its config."""
        return self.checkpoint.exists()

    def check_resumable(self) -> None:
        """A run with a checkpoint continues from it, one with only its config.json starts again from it."""
        if not self.has_trained() and self.saved_config() is None:
            raise ConfigError(f"--resume: {self.checkpoint} does not exist; start the run without --resume")

    def check_fresh(self, config: dict, *, force: bool) -> None:
        """Refuse to start a fresh run over an existing one unless --force; the same run that never reached its
        first checkpoint has nothing to lose and starts again (the same command, after a stop while starting)."""
        if not self.holds_run() or force:
            return
        same = self.saved_config() == config
        if same and not self.has_trained():
            return
        what = "this same run (identical config)" if same else "a different run"
        raise ConfigError(
            f"{self.root} already holds {what}; pass --resume to continue it or --force to replace it, "
            "or choose another --out"
        )

    def clear(self) -> None:
        """Remove the files of a previous run (only the run's own files; anything else in the folder stays)."""
        for path in (self.config, self.metrics, self.checkpoint, self.student, self.impressions):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)


def run_dir_candidates(base: Path) -> Iterator[RunDir]:
    """``base``, ``base-2``, ``base-3``, ...: the names an automatic run directory is chosen from."""
    yield RunDir(base)
    for number in itertools.count(2):
        yield RunDir(base.with_name(f"{base.name}-{number}"))


def fresh_run_dir(base: Path) -> RunDir:
    """The first free of :func:`run_dir_candidates`, as it looks now: the name ``--print-config`` shows.

    A run takes its directory with ``run_lock.fresh_run_dir_lock``, which is race-free, and may get a later one.
    """
    return next(candidate for candidate in run_dir_candidates(base) if candidate.is_free())
