"""The files of a run directory, and the rule that a run is never overwritten by accident."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

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
    def tensorboard(self) -> Path:
        return self.root / "tb"

    def holds_run(self) -> bool:
        return self.config.exists() or self.checkpoint.exists() or self.metrics.exists()

    def saved_config(self) -> dict | None:
        try:
            return json.loads(self.config.read_text())["config"]
        except (OSError, ValueError, KeyError):
            return None

    def check_resumable(self) -> None:
        if not self.checkpoint.exists():
            raise ConfigError(f"--resume: {self.checkpoint} does not exist; start the run without --resume")

    def check_fresh(self, config: dict, *, force: bool) -> None:
        """Refuse to start a fresh run over an existing one unless --force."""
        if not self.holds_run() or force:
            return
        same = self.saved_config() == config
        what = "this same run (identical config)" if same else "a different run"
        raise ConfigError(
            f"{self.root} already holds {what}; pass --resume to continue it or --force to replace it, "
            "or choose another --out"
        )

    def clear(self) -> None:
        """Remove the files of a previous run (only the run's own files; anything else in the folder stays)."""
        for path in (self.config, self.metrics, self.checkpoint, self.student):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)
