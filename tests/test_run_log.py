"""Reading and writing a run's metrics.jsonl: resumes, crashes mid-write and directories that are not runs."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import pytest

from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.run_log.metrics_file import MetricsLog, read_run


def _write_config(run_dir: Path, **fields) -> None:
    config = {
        "fastlrwa_version": "0.1.0",
        "method": "lrwa-mb",
        "dataset": "digits",
        "student": "lenet5_half",
        "seed": 3,
        "epochs": 9,
        "config": {},
        "versions": {},
        "device": "cpu",
    }
    config.update(fields)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))


def _epoch_record(rng: random.Random, epoch: int) -> dict:
    return {
        "epoch": epoch,
        "test_accuracy": rng.uniform(5.0, 99.0),
        "loss_student": rng.random(),
        "grad_cos": rng.uniform(-1, 1),
        "step_time_s": rng.random(),
    }


def _log(run_dir: Path, records: list[dict]) -> None:
    log = MetricsLog(run_dir)
    for record in records:
        log.append(record)


def test_read_run_round_trip(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path, epochs=9, seed=3)
    records = [_epoch_record(rng, epoch) for epoch in range(1, 10)]
    _log(tmp_path, records)
    run = read_run(tmp_path)
    assert (run.method, run.dataset, run.student, run.seed, run.epochs_configured) == (
        "lrwa-mb",
        "digits",
        "lenet5_half",
        3,
        9,
    )
    assert run.accuracies == [record["test_accuracy"] for record in records]
    assert run.metrics == records
    assert run.complete
    assert (run.teacher_accuracy, run.teacher, run.teacher_sha256) == (None, None, None)


def test_unfinished_run_is_not_complete(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path, epochs=9)
    _log(tmp_path, [_epoch_record(rng, epoch) for epoch in range(1, 5)])
    run = read_run(tmp_path)
    assert len(run.accuracies) == 4
    assert not run.complete


def test_teacher_fields_from_config(tmp_path: Path, rng: random.Random) -> None:
    accuracy = rng.uniform(80, 99)
    sha = f"{rng.getrandbits(256):064x}"
    _write_config(tmp_path, teacher_accuracy=accuracy, teacher_arch="resnet34", teacher_sha256=sha)
    _log(tmp_path, [_epoch_record(rng, 1)])
    run = read_run(tmp_path)
    assert (run.teacher_accuracy, run.teacher, run.teacher_sha256) == (accuracy, "resnet34", sha)


def test_last_line_of_an_epoch_wins(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    first_attempt = [_epoch_record(rng, epoch) for epoch in range(1, 6)]
    resumed = [_epoch_record(rng, epoch) for epoch in range(4, 8)]
    _log(tmp_path, first_attempt + resumed)
    run = read_run(tmp_path)
    expected = first_attempt[:3] + resumed
    assert run.accuracies == [record["test_accuracy"] for record in expected]
    assert run.metrics == expected


def test_cut_last_line_is_ignored_with_a_warning(tmp_path: Path, rng: random.Random, caplog) -> None:
    _write_config(tmp_path)
    records = [_epoch_record(rng, epoch) for epoch in range(1, 6)]
    _log(tmp_path, records)
    whole_line = json.dumps(_epoch_record(rng, 6))
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write(whole_line[: len(whole_line) // 2])
    with caplog.at_level(logging.WARNING, logger="fastlrwa.run_log.metrics_file"):
        run = read_run(tmp_path)
    assert run.accuracies == [record["test_accuracy"] for record in records]
    assert "line 6" in caplog.text and "metrics.jsonl" in caplog.text


def test_append_after_a_cut_line_starts_a_fresh_line(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    records = [_epoch_record(rng, epoch) for epoch in range(1, 4)]
    _log(tmp_path, records)
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 4, "test_accu')
    resumed = _epoch_record(rng, 4)
    MetricsLog(tmp_path).append(resumed)
    assert read_run(tmp_path).metrics == records + [resumed]


def test_append_forces_the_line_to_disk(tmp_path: Path, rng: random.Random, monkeypatch) -> None:
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    MetricsLog(tmp_path).append(_epoch_record(rng, 1))
    assert synced, "append must fsync the log"


def test_append_rejects_a_record_without_epoch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epoch"):
        MetricsLog(tmp_path).append({"test_accuracy": 50.0})
    with pytest.raises(ValueError, match="epoch"):
        MetricsLog(tmp_path).append({"epoch": 0, "test_accuracy": 50.0})


def test_truncate_after_keeps_the_checkpointed_epochs(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    first_attempt = [_epoch_record(rng, epoch) for epoch in range(1, 6)]
    resumed = [_epoch_record(rng, epoch) for epoch in range(3, 7)]
    _log(tmp_path, first_attempt + resumed)
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 7, "test_')
    kept = MetricsLog(tmp_path).truncate_after(4)
    expected = first_attempt[:2] + resumed[:2]
    assert kept == expected
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert read_run(tmp_path).metrics == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.jsonl"]


def test_truncate_after_zero_empties_the_log(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    _log(tmp_path, [_epoch_record(rng, epoch) for epoch in range(1, 4)])
    assert MetricsLog(tmp_path).truncate_after(0) == []
    assert read_run(tmp_path).accuracies == []


def _one_line_error(error: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path)
    _one_line_error(error, str(tmp_path), "config.json")
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path / "missing")
    _one_line_error(error, str(tmp_path / "missing"), "does not exist")
    tmp_path.joinpath("a_file").write_text("x")
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path / "a_file")
    _one_line_error(error, "a_file", "not a directory")
    _write_config(tmp_path)
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path)
    _one_line_error(error, str(tmp_path), "metrics.jsonl")


def test_bad_config(tmp_path: Path) -> None:
    tmp_path.joinpath("config.json").write_text("{not json")
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path)
    _one_line_error(error, "config.json", "not valid JSON")
    _write_config(tmp_path, method=None)
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path)
    _one_line_error(error, '"method"')
    _write_config(tmp_path, epochs="twenty")
    with pytest.raises(ConfigError) as error:
        read_run(tmp_path)
    _one_line_error(error, '"epochs"')


def test_missing_epoch_is_an_error(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    _log(tmp_path, [_epoch_record(rng, epoch) for epoch in (1, 2, 4)])
    with pytest.raises(UserFacingError) as error:
        read_run(tmp_path)
    _one_line_error(error, "not epoch 3")


@pytest.mark.parametrize("accuracy", ["high", None, float("nan"), 130.0, -2.5])
def test_bad_accuracy_is_an_error(tmp_path: Path, rng: random.Random, accuracy) -> None:
    _write_config(tmp_path)
    bad = _epoch_record(rng, 2)
    bad["test_accuracy"] = accuracy
    _log(tmp_path, [_epoch_record(rng, 1), bad])
    with pytest.raises(UserFacingError) as error:
        read_run(tmp_path)
    _one_line_error(error, "line 2", "epoch 2", "test_accuracy")


def test_json_line_without_epoch_is_an_error(tmp_path: Path, rng: random.Random) -> None:
    _write_config(tmp_path)
    _log(tmp_path, [_epoch_record(rng, 1)])
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"test_accuracy": 40.0}) + "\n")
    with pytest.raises(UserFacingError) as error:
        read_run(tmp_path)
    _one_line_error(error, "line 2", "epoch")
