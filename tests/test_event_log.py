"""The run's TensorBoard events, written in the training thread: read back by TensorBoard itself, a failed
append leaves the file as it was, and a resumed run's events hide the older ones of the steps it logs again."""

from __future__ import annotations

import errno
import os
import random

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastlrwa.run_log import event_log
from fastlrwa.run_log.event_log import EventLog


def _scalars(directory, tag):
    events = EventAccumulator(str(directory)).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_events_read_back_and_a_resume_hides_the_steps_it_logs_again(tmp_path):
    rng = random.Random(7)
    first = [rng.uniform(-3, 3) for _ in range(3)]
    crashed = EventLog(tmp_path, first_step=1)
    for step, value in enumerate(first, start=1):
        crashed.scalar("loss", value, step)
        crashed.flush()
    resumed = EventLog(tmp_path, first_step=2)  # the checkpoint held epoch 1: steps 2 and 3 come again
    again = [rng.uniform(-3, 3) for _ in range(2)]
    for step, value in enumerate(again, start=2):
        resumed.scalar("loss", value, step)
    resumed.flush()
    read = _scalars(tmp_path, "loss")
    assert [step for step, _ in read] == [1, 2, 3]
    assert [value for _, value in read] == pytest.approx([first[0], *again], rel=1e-6)  # stored as float32


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    log = EventLog(tmp_path, first_step=1)
    log.scalar("acc", 0.37, 1)
    log.flush()
    (path,) = tmp_path.iterdir()
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # as a disk that fills in the middle of the record
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    log.scalar("acc", 0.61, 2)
    monkeypatch.setattr(event_log.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        log.flush()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _scalars(tmp_path, "acc") == [(1, pytest.approx(0.37))]


def test_a_first_append_that_fails_leaves_no_file(tmp_path, monkeypatch):
    log = EventLog(tmp_path / "tb", first_step=3)
    log.scalar("acc", 0.5, 3)
    monkeypatch.setattr(event_log.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "quota")))
    with pytest.raises(OSError):
        log.flush()
    assert list((tmp_path / "tb").iterdir()) == []
