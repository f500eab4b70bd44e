"""A run directory's per-epoch log: the writer the trainer uses and the reader the report uses.

A run directory holds ``config.json`` (what was run) and ``metrics.jsonl`` (one JSON object per
finished epoch, at least ``{"epoch": k}``, k counted from 1, with ``"test_accuracy": percent`` on every line of a
run that has test data and on none of a run that has not, which measures its student by ``"agree_heldout"``, the
student-teacher agreement on held-out generated samples, a fraction).

Two kinds of damage are expected and handled: a crash while a line is being written leaves a cut
line (ignored with a warning), and a run resumed from a checkpoint older than its log writes
an epoch again (the last line for an epoch wins). ``MetricsLog.truncate_after`` lets a resumed run
drop the epochs its checkpoint does not have, so the log never runs ahead of the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastlrwa.atomic_io import atomic_write_text
from fastlrwa.config.schema import upgrade_train_config
from fastlrwa.errors import ConfigError, UserFacingError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What the report needs from one run directory.

    ``metrics[k - 1]`` is epoch k's full log record and ``accuracies[k - 1]`` its test accuracy (%), for every
    logged epoch, or none at all where the run had no test data (``accuracy_measured``); ``complete`` says
    whether every configured epoch has been logged. The student
    and teacher fields are None where config.json does not record them; ``config`` is the resolved
    config the run recorded (nested, as ``to_dict`` writes it), empty where it records none.
    """

    path: Path
    method: str
    dataset: str
    student: str | None
    teacher: str | None
    teacher_sha256: str | None
    seed: int
    epochs_configured: int
    teacher_accuracy: float | None
    accuracies: list[float]
    metrics: list[dict[str, Any]]
    complete: bool
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_logged(self) -> int:
        return len(self.metrics)

    @property
    def accuracy_measured(self) -> bool:
        return bool(self.accuracies)

    @property
    def final_heldout_agreement(self) -> float | None:
        """The last epoch's ``agree_heldout`` (a fraction), None where the run logged none."""
        value = self.metrics[-1].get("agree_heldout") if self.metrics else None
        return float(value) if _is_real(value) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_epoch_records(path: Path) -> dict[int, tuple[int, dict[str, Any]]]:
    """Epoch -> (line number, record) of a metrics log; the last line of an epoch wins.

    A line that is not JSON is the remains of a write cut by a crash (``MetricsLog.append`` starts
    the next line after it on a fresh line): it is skipped with a warning. A JSON line without a
    valid epoch is not something the writer produces, so it is an error.
    """
    records: dict[int, tuple[int, dict[str, Any]]] = {}
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning(
                "%s: ignored line %d, cut off mid-write (the run crashed while logging that epoch)", path, number
            )
            continue
        if not isinstance(record, dict) or not _is_int(record.get("epoch")) or record["epoch"] < 1:
            raise UserFacingError(
                f'{path} line {number} has no integer "epoch" >= 1; this is not a fastlrwa metrics log '
                f"or it was edited: fix or delete that line"
            )
        records[record["epoch"]] = (number, record)
    return records


def _read_config(run_dir: Path) -> dict[str, Any]:
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"{run_dir} is not a fastlrwa run directory: it has no {CONFIG_FILE}; "
            f"pass the --out directory of `fastlrwa train`"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{config_path} is not valid JSON ({error}); restore it from the run") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path} is not a JSON object; restore it from the run")
    return config


def _require(config: dict[str, Any], key: str, valid: Any, what: str, config_path: Path) -> Any:
    value = config.get(key)
    if not valid(value):
        raise ConfigError(
            f'{config_path} needs "{key}" as {what}, found {value!r}; it was not written by '
            f"`fastlrwa train` or was edited: restore it"
        )
    return value


def _optional(config: dict[str, Any], key: str, kind: type) -> Any:
    value = config.get(key)
    return value if isinstance(value, kind) else None


def _accuracies(metrics_path: Path, records: dict[int, tuple[int, dict[str, Any]]]) -> list[float]:
    """Every epoch's test accuracy, or none where no line has one (a run with no test data)."""
    missing = [epoch for epoch in range(1, max(records, default=0) + 1) if epoch not in records]
    if missing:
        raise UserFacingError(
            f"{metrics_path} logs epochs up to {max(records)} but not epoch {missing[0]}; the log was edited "
            f"or mixes two runs: restore it, or delete the lines after epoch {missing[0] - 1}"
        )
    if all("test_accuracy" not in record for _, record in records.values()):
        return []
    accuracies = []
    for epoch in range(1, len(records) + 1):
        number, record = records[epoch]
        accuracy = record.get("test_accuracy")
        if not _is_real(accuracy) or not 0.0 <= accuracy <= 100.0:
            raise UserFacingError(
                f"{metrics_path} line {number} (epoch {epoch}) has test_accuracy {accuracy!r}, not a percentage "
                f"in [0, 100]; fix or delete that line"
            )
        accuracies.append(float(accuracy))
    return accuracies


def read_run(run_dir: str | os.PathLike) -> RunRecord:
    """Read a run directory written by ``fastlrwa train``.

    Raises ``ConfigError`` when the directory is not a run (no ``config.json`` or no
    ``metrics.jsonl``) and ``UserFacingError`` when its log is damaged beyond lines cut by a crash.
    """
    path = Path(run_dir)
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise ConfigError(f"{path} {problem}; pass the --out directory of `fastlrwa train`")
    config = _read_config(path)
    config_path = path / CONFIG_FILE
    method = _require(config, "method", lambda v: isinstance(v, str) and v, "a method name", config_path)
    dataset = _require(config, "dataset", lambda v: isinstance(v, str) and v, "a dataset name", config_path)
    seed = _require(config, "seed", _is_int, "an integer", config_path)
    epochs = _require(config, "epochs", lambda v: _is_int(v) and v >= 1, "an integer >= 1", config_path)
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        raise ConfigError(
            f"{path} has no {METRICS_FILE}: it has not finished an epoch yet or is not a fastlrwa run; "
            f"report it after its first epoch"
        )
    records = _read_epoch_records(metrics_path)
    accuracies = _accuracies(metrics_path, records)
    return RunRecord(
        path=path,
        method=method,
        dataset=dataset,
        student=_optional(config, "student", str),
        teacher=_optional(config, "teacher_arch", str),
        teacher_sha256=_optional(config, "teacher_sha256", str),
        seed=seed,
        epochs_configured=epochs,
        teacher_accuracy=float(config["teacher_accuracy"]) if _is_real(config.get("teacher_accuracy")) else None,
        accuracies=accuracies,
        metrics=[records[epoch][1] for epoch in range(1, len(records) + 1)],
        complete=len(records) >= epochs,
        # Keys renamed since the run was written are read under their names of today, so that runs of two
        # versions that ran the same setting compare as one.
        config=upgrade_train_config(_optional(config, "config", dict) or {}),
    )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MetricsLog:
    """The append-only ``metrics.jsonl`` of a run directory, one line per finished epoch."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / METRICS_FILE

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's record and force it to disk, so a crash loses at most this line.

        ``record`` needs an integer ``"epoch"`` >= 1 and must be JSON-serialisable (plain Python
        numbers, not tensors).
        """
        epoch = record.get("epoch")
        if not _is_int(epoch) or epoch < 1:
            raise ValueError(f"a metrics record needs an integer 'epoch' >= 1, got {epoch!r}")
        line = (json.dumps(dict(record)) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "a+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size > 0:
                handle.seek(-1, os.SEEK_END)
                # A line cut by an earlier crash must not swallow this one.
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            try:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:  # a full disk: no cut line is left behind
                handle.truncate(size)
                raise
        if created:
            _fsync_directory(self.path.parent)

    def truncate_after(self, epoch: int) -> list[dict[str, Any]]:
        """Keep only epochs <= ``epoch`` (one line each, the last logged), rewritten atomically.

        Used on resume so the log matches the checkpoint; lines cut by a crash are dropped. Returns
        the kept records in epoch order.
        """
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        records = _read_epoch_records(self.path) if self.path.exists() else {}
        kept = [record for logged, (_, record) in sorted(records.items()) if logged <= epoch]
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))
        return kept
