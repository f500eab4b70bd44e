"""What a cluster does to a run directory, with real processes and signals: a second process on the same run,
a disk that fills, SIGTERM from a batch scheduler. Each ends in one line and a documented exit code, and the
run continues with --resume to the result of a run that was never disturbed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_TRAIN_FLAGS, signal_after_line, tiny_overrides, without_timing
from fastlrwa.commands.train import run_train
from fastlrwa.config.presets import train_config
from fastlrwa.errors import RunWriteError
from fastlrwa.run_log.event_log import EventLog
from fastlrwa.trainer import loop
from fastlrwa.trainer.run_lock import LOCK_FILE
from fastlrwa.trainer.stop_signals import StoppedAtOnce, stop_at_once, stop_error

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Two epochs of many short iterations: a signal sent after the first epoch's line lands inside the second.
RUN_FLAGS = [*TINY_TRAIN_FLAGS, "--epochs", "2", "--iters-per-epoch", "40"]


def _train_command(out: Path, teacher: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fastlrwa", "train", "--out", str(out), "--teacher", str(teacher), *RUN_FLAGS, *extra]


def _train(out: Path, teacher: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_train_command(out, teacher, *extra), env=ENV, capture_output=True, text=True, timeout=300)


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _records(out: Path) -> list[dict]:
    return without_timing([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])


def _student_weights(out: Path) -> dict:
    return torch.load(out / "student.pt", weights_only=True)["state_dict"]


def _assert_same_run(run: Path, reference: Path) -> None:
    assert _records(run) == _records(reference)
    ours, theirs = _student_weights(run), _student_weights(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, lenet_teacher) -> Path:
    out = tmp_path_factory.mktemp("undisturbed") / "run"
    finished = _train(out, lenet_teacher)
    assert finished.returncode == 0, finished.stderr
    return out


def _hold_lock(root: Path) -> subprocess.Popen:
    """Another process holding the run directory, as a training process does for its whole run."""
    code = (
        "import sys, time; from pathlib import Path; from fastlrwa.trainer.run_lock import run_dir_lock\n"
        "with run_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    holder = _hold_lock(out)
    try:
        refused = _train(out, lenet_teacher)
        assert refused.returncode == 2
        errors = _errors(refused.stderr)
        assert len(errors) == 1 and f"(pid {holder.pid})" in errors[0] and str(out) in errors[0], refused.stderr
        assert not (out / "config.json").exists() and not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL gives no chance to clean up: the kernel released the lock, the file that stays is no obstacle.
    assert (out / LOCK_FILE).exists()
    assert _train(out, lenet_teacher, "--stop-after", "1").returncode == 0
    holder = _hold_lock(out)
    try:
        refused = _train(out, lenet_teacher, "--resume")
        assert refused.returncode == 2 and f"(pid {holder.pid})" in _errors(refused.stderr)[0]
    finally:
        holder.kill()
        holder.wait()
    assert [record["epoch"] for record in _records(out)] == [1]


def test_sigterm_checkpoints_the_current_iteration_and_resume_matches(tmp_path, lenet_teacher, undisturbed):
    out = tmp_path / "run"
    process = subprocess.Popen(_train_command(out, lenet_teacher), stderr=subprocess.PIPE, text=True, env=ENV)
    rest = signal_after_line(process, "epoch 1/2", signal.SIGTERM)
    assert process.returncode == 143
    errors = _errors(rest)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and 1 <= state["iteration"] < 40, (state["epoch"], state["iteration"])
    assert len(errors) == 1 and "SIGTERM" in errors[0] and f"iteration {state['iteration']}" in errors[0]
    assert "--resume" in errors[0]
    resumed = _train(out, lenet_teacher, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(out, undisturbed)


# A training process whose iteration 3 of epoch 2 sends itself two stop signals, the second before the loop
# can act on the first: signals sent to oneself are delivered before os.kill returns.
SIGNALLED_TWICE = """
import os, signal, sys
from fastlrwa.cli import cli
from fastlrwa.trainer.loop import Trainer
first, second, at = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
original, calls = Trainer._iteration, [0]
def signalled_twice(self):
    original(self)
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), first)
        os.kill(os.getpid(), second)
Trainer._iteration = signalled_twice
cli(sys.argv[4:], prog_name="fastlrwa")
"""


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        (signal.SIGTERM, signal.SIGTERM, 143),
        pytest.param(signal.SIGINT, signal.SIGINT, 130, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
)
def test_a_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path, lenet_teacher, first, second, code):
    out = tmp_path / "run"
    argv = _train_command(out, lenet_teacher, "--iters-per-epoch", "4")[3:]
    stopped = subprocess.run(
        [sys.executable, "-c", SIGNALLED_TWICE, str(int(first)), str(int(second)), "7", *argv],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stopped.returncode == code, stopped.stderr
    errors = _errors(stopped.stderr)
    assert len(errors) == 1, stopped.stderr
    assert f"stopped at once by a second {second.name}" in errors[0]
    assert f"{out / 'checkpoint.pt'} (epoch 1) is kept" in errors[0] and "--resume" in errors[0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["iteration"]) == (1, 0)


def test_a_failed_tensorboard_write_is_one_error_and_resume_logs_every_epoch_once(
    tmp_path, lenet_teacher, monkeypatch, capfd
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    original, calls = EventLog.flush, {"n": 0}

    def full_at_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self)

    monkeypatch.setattr(EventLog, "flush", full_at_second_epoch)
    overrides = tiny_overrides(tmp_path / "run", lenet_teacher)
    with pytest.raises(RunWriteError, match="tb could not be written") as raised:
        run_train(train_config("digits", overrides), explicit=set(overrides))
    # The events go before the checkpoint: the epoch whose events are missing is trained again on resume.
    assert "(epoch 1) is kept" in str(raised.value) and "No space left on device" in str(raised.value)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert "Traceback" not in capfd.readouterr().err
    monkeypatch.undo()
    run_train(train_config("digits", overrides), resume=True, explicit=set(overrides))
    scalars = EventAccumulator(str(tmp_path / "run" / "tb")).Reload().Scalars("test_accuracy")
    assert [event.step for event in scalars] == [1, 2]
    assert [record["epoch"] for record in _records(tmp_path / "run")] == [1, 2]


def test_a_failed_checkpoint_write_is_one_error_naming_the_kept_epoch(tmp_path, lenet_teacher, monkeypatch):
    """Where no small file system can be mounted: the write fails as torch.save fails on a full disk."""
    original = loop.atomic_torch_save
    calls = {"n": 0}

    def full_at_second_epoch(state, path):
        calls["n"] += 1
        if calls["n"] == 2:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None
        return original(state, path)

    monkeypatch.setattr(loop, "atomic_torch_save", full_at_second_epoch)
    overrides = tiny_overrides(tmp_path / "run", lenet_teacher)
    with pytest.raises(RunWriteError, match="checkpoint.pt could not be written") as raised:
        run_train(train_config("digits", overrides), explicit=set(overrides))
    assert "(epoch 1) is kept" in str(raised.value) and "No space left on device" in str(raised.value)
    assert RunWriteError.exit_code == 4
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1


def _mount_tmpfs(where: Path, size_mb: int) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)], capture_output=True
    )
    return mounted.returncode == 0


def _fill(disk: Path, left: int) -> Path:
    """A file that leaves ``left`` bytes of ``disk`` free."""
    free = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\1" * (free.f_bavail * free.f_frsize - left))
    return filler


# slow: a whole run and its resume; the default run keeps the full disk at the first checkpoint
@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_resume_after_freeing_space_matches(tmp_path, lenet_teacher, undisturbed):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 8):
        pytest.skip("mounting a small tmpfs needs root; the injected-OSError test covers the message")
    try:
        out = disk / "run"
        for left in (0, 4096):  # nothing left: the lock's pid cannot be written; one page: config.json cannot
            filler = _fill(disk, left)
            full = _train(out, lenet_teacher)
            assert full.returncode == 4, full.stderr
            errors = _errors(full.stderr)
            assert len(errors) == 1 and "could not be written (No space left on device)" in errors[0], full.stderr
            assert ("lock" if left == 0 else "config.json") in errors[0] and "run the same command again" in errors[0]
            assert not out.exists()  # the run created the folder and leaves none behind
            filler.unlink()
        paused = _train(out, lenet_teacher, "--stop-after", "1")
        assert paused.returncode == 0, paused.stderr
        filler = _fill(disk, 4096)
        before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
        full = _train(out, lenet_teacher, "--resume")
        assert full.returncode == 4, full.stderr
        errors = _errors(full.stderr)
        assert len(errors) == 1 and "could not be written (No space left on device)" in errors[0], full.stderr
        assert "(epoch 1) is kept" in errors[0] and "--resume" in errors[0]
        assert not [path for path in out.rglob("*.tmp")]  # no partial file left behind
        assert (out / "checkpoint.pt").read_bytes() == before["checkpoint.pt"]
        assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
        filler.unlink()
        resumed = _train(out, lenet_teacher, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        _assert_same_run(out, undisturbed)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ----- the automatic run directory, chosen by processes started together ----------------------------------------
# A process that waits for the word go, then takes the first free of BASE, BASE-2, ... and fills it as a run does.
CLAIMS_ONE = """
import sys, time
from pathlib import Path
from fastlrwa.trainer.run_lock import fresh_run_dir_lock
sys.stdin.readline()
with fresh_run_dir_lock(Path(sys.argv[1])) as run:
    print(run.root, flush=True)
    time.sleep(0.02)
    run.config.write_text("{}")
"""


def test_processes_started_together_never_choose_the_same_run_directory(tmp_path):
    base, taken = tmp_path / "runs" / "digits", []
    for _ in range(15):
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", CLAIMS_ONE, str(base)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        for process in processes:  # all three are waiting: the word reaches them within microseconds
            process.stdin.write("go\n")
            process.stdin.flush()
        chosen = [process.communicate(timeout=60)[0].strip() for process in processes]
        assert all(process.returncode == 0 for process in processes)
        assert len(set(chosen)) == 3 and not set(chosen) & set(taken), chosen
        taken += chosen
    # Each took the first name free when it looked: the names are BASE, BASE-2, ... with none skipped for good.
    assert sorted(taken) == sorted([str(base)] + [f"{base}-{number}" for number in range(2, 46)])


# slow: two whole trainings; the default run keeps the directory choice of processes started together
@pytest.mark.slow
def test_two_trainings_started_together_without_out_get_a_directory_each(tmp_path, lenet_teacher):
    command = [sys.executable, "-m", "fastlrwa", "train", "--teacher", str(lenet_teacher), *TINY_TRAIN_FLAGS]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    said = sorted(line.split()[2] for output in outputs for line in output.splitlines() if "run directory:" in line)
    assert said == [str(Path("runs") / "digits"), str(Path("runs") / "digits-2")]
    for name in said:
        assert [record["epoch"] for record in _records(tmp_path / name)] == [1]


# ----- a stop while the run loads ----------------------------------------------------------------------------------
# A training process that says when it reaches the slow part of loading (building the run, or reading the
# checkpoint to resume from) and waits there, long enough for a signal to arrive.
SLOW_TO_LOAD = """
import sys, time
from fastlrwa.cli import cli
from fastlrwa.commands import distill
from fastlrwa.trainer.loop import Trainer
slow = sys.argv[1]
def waits(original):
    def waiting(*args, **kwargs):
        print("loading", file=sys.stderr, flush=True)
        time.sleep(60)
        return original(*args, **kwargs)
    return waiting
if slow == "build":
    distill.build_run = waits(distill.build_run)
else:
    Trainer.load_checkpoint = waits(Trainer.load_checkpoint)
cli(sys.argv[2:], prog_name="fastlrwa")
"""


def _run_files(out: Path) -> dict[str, bytes]:
    """Every file of the run but the lock, which records the pid of its last holder."""
    return {path.name: path.read_bytes() for path in out.iterdir() if path.is_file() and path.name != LOCK_FILE}


def _stopped_while_loading(slow: str, out: Path, teacher: Path, *extra: str) -> tuple[int, list[str]]:
    argv = _train_command(out, teacher, *extra)[3:]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_TO_LOAD, slow, *argv], stderr=subprocess.PIPE, text=True, env=ENV
    )
    rest = signal_after_line(process, "loading\n", signal.SIGTERM, timeout=60)
    return process.returncode, _errors(rest)


# slow: a run started and stopped per loading stage; the default run keeps SIGTERM as the run starts
@pytest.mark.slow
def test_sigterm_while_loading_ends_in_one_line_and_writes_nothing(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    code, errors = _stopped_while_loading("build", out, lenet_teacher)
    assert code == 143 and len(errors) == 1, errors
    assert "stopped by SIGTERM while loading, before the first iteration" in errors[0]
    assert "nothing was trained yet" in errors[0]
    assert not out.exists()  # the folder the run created for its lock is gone with it

    assert _train(out, lenet_teacher, "--stop-after", "1").returncode == 0
    before = _run_files(out)
    code, errors = _stopped_while_loading("resume", out, lenet_teacher, "--resume")
    assert code == 143 and len(errors) == 1, errors
    assert f"its checkpoint {out / 'checkpoint.pt'} is kept as it was" in errors[0] and "continue it" in errors[0]
    assert _run_files(out) == before
    resumed = _train(out, lenet_teacher, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [record["epoch"] for record in _records(out)] == [1, 2]


# A training process that sends itself SIGTERM as it starts: just after writing config.json (while loading), or
# just before the loop takes the signals over. A signal sent to oneself is delivered before os.kill returns.
SIGNALLED_AS_IT_STARTS = """
import os, signal, sys
from fastlrwa.cli import cli
from fastlrwa.commands import distill
from fastlrwa.trainer.loop import Trainer
def signalled_after(original):
    def signalled(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
    return signalled
def signalled_before(original):
    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)
    return signalled
if sys.argv[1] == "config":
    distill._write_config = signalled_after(distill._write_config)
else:
    Trainer.fit = signalled_before(Trainer.fit)
cli(sys.argv[2:], prog_name="fastlrwa")
"""


@pytest.mark.parametrize(
    ("where", "again"), [pytest.param("config", (), marks=pytest.mark.slow), ("loop", ("--resume",))]
)
def test_sigterm_as_the_run_starts_leaves_a_run_the_same_command_or_resume_starts(
    tmp_path, lenet_teacher, undisturbed, where, again
):
    """Between config.json and the first iteration nothing is trained: a stop there is one line, and the run
    directory it leaves (its config.json, no checkpoint) is started again, by the same command or by --resume."""
    out = tmp_path / "run"
    stopped = subprocess.run(
        [sys.executable, "-c", SIGNALLED_AS_IT_STARTS, where, *_train_command(out, lenet_teacher)[3:]],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stopped.returncode == 143, stopped.stderr
    errors = _errors(stopped.stderr)
    assert len(errors) == 1, stopped.stderr
    assert "stopped by SIGTERM while loading, before the first iteration; nothing was trained yet" in errors[0]
    assert (out / "config.json").exists() and not (out / "checkpoint.pt").exists()
    assert not [path for path in out.rglob("*.tmp")]
    started = _train(out, lenet_teacher, *again)
    assert started.returncode == 0, started.stderr
    assert ("has no checkpoint yet: starting it from the beginning" in started.stderr) == bool(again)
    _assert_same_run(out, undisturbed)


def test_a_full_disk_at_the_first_checkpoint_is_continued_by_resume(tmp_path, lenet_teacher, monkeypatch):
    """The run's line says to continue with --resume even before any checkpoint exists; that resume starts the
    run again from its config.json, to the result of a run never stopped."""
    original = loop.atomic_torch_save

    def full(state, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(loop, "atomic_torch_save", full)
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    overrides = tiny_overrides(out, lenet_teacher)
    with pytest.raises(RunWriteError, match="checkpoint.pt could not be written") as raised:
        run_train(train_config("digits", overrides), explicit=set(overrides))
    assert "no checkpoint was written yet" in str(raised.value) and f"--out {out} --resume" in str(raised.value)
    assert not (out / "checkpoint.pt").exists()
    monkeypatch.setattr(loop, "atomic_torch_save", original)
    run_train(train_config("digits", {"runtime.out": str(out)}), resume=True, explicit={"runtime.out"})
    fresh_overrides = tiny_overrides(fresh, lenet_teacher)
    run_train(train_config("digits", fresh_overrides), explicit=set(fresh_overrides))
    assert [record["epoch"] for record in _records(out)] == [1, 2]
    _assert_same_run(out, fresh)


def test_an_error_a_stop_leaves_behind_is_that_stop():
    """A SIGTERM that lands inside an import leaves the module half imported; its next use fails (numpy's with a
    RecursionError). That failure is the stop, not a traceback."""
    with pytest.raises(StoppedAtOnce) as stopped:
        with stop_at_once():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except StoppedAtOnce:
                pass  # swallowed on the way, as an import machinery may
            raise RecursionError("maximum recursion depth exceeded")
    assert stopped.value.signum == signal.SIGTERM and stop_error(stopped.value).exit_code == 143
    with pytest.raises(RecursionError):  # with no stop signal, an error is itself
        with stop_at_once():
            raise RecursionError("maximum recursion depth exceeded")
