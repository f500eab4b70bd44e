"""One training process per run directory: an exclusive ``fcntl.flock`` on ``RUN/.lock``.

The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a killed run
never leaves a stale lock behind; the file itself stays and only records the holder's pid for the
message a second process gets. Readers (``report``, ``evaluate``) never take it; a sweep only looks
(``lock_holder``) to tell a run another process is training from one that failed.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastlrwa.errors import ConfigError
from fastlrwa.trainer.run_dir import RunDir, run_dir_candidates
from fastlrwa.trainer.write_guard import guarded_write

LOCK_FILE = ".lock"
# The words of the refusal a sweep recognises in a run's last log line: the run was busy, not failed.
IN_USE = "is in use by another fastlrwa process"


class RunLockedError(ConfigError):
    """Another process trains in this run directory."""


def _holder_pid(fd: int) -> str:
    return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"


def _same_file(fd: int, lock: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock``: a run that created its folder removes both when it wrote
    nothing, and a lock taken on the removed file would guard nothing."""
    try:
        here, there = os.fstat(fd), os.stat(lock)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _take(root: Path) -> tuple[int, bool]:
    """Lock ``root`` (creating it if missing): its locked descriptor and whether this call created the folder."""
    while True:
        created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        lock = root / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed between the two calls by a run that gave it up
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise RunLockedError(
                f"{root} {IN_USE} (pid {holder}); wait for it to end or stop it, or choose another --out"
            ) from None
        if _same_file(fd, lock):
            break
        os.close(fd)
    try:
        with guarded_write(lock, "nothing of this run was written", "run the same command again"):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        _give_back(root, fd, created)
        raise
    return fd, created


def _give_back(root: Path, fd: int, created: bool) -> None:
    try:
        # A run that failed before writing anything leaves no folder behind, as without the lock. The file goes
        # while still locked (see _same_file); the folder stays if another process has just opened a lock in it.
        if created and os.listdir(root) == [LOCK_FILE]:
            (root / LOCK_FILE).unlink()
            try:
                root.rmdir()
            except OSError:
                pass
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


@contextmanager
def run_dir_lock(root: Path) -> Iterator[None]:
    """Hold the run directory ``root`` for this process, or raise ``RunLockedError`` at once."""
    fd, created = _take(root)
    try:
        yield
    finally:
        _give_back(root, fd, created)


@contextmanager
def fresh_run_dir_lock(base: Path) -> Iterator[RunDir]:
    """The first of ``base``, ``base-2``, ... that holds no run and no other process holds, held for this process.

    Race-free: a candidate is checked again once its lock is taken, so two processes started together never
    choose the same one (each skips what the other holds or has filled meanwhile).
    """
    for candidate in run_dir_candidates(base):
        if not candidate.is_free():
            continue
        try:
            fd, created = _take(candidate.root)
        except RunLockedError:
            continue
        if not candidate.is_free():  # a run started and ended here between the first look and the lock
            _give_back(candidate.root, fd, created)
            continue
        try:
            yield candidate
        finally:
            _give_back(candidate.root, fd, created)
        return


def lock_holder(root: Path) -> str | None:
    """The pid of the process that holds ``root`` now, or None. Looks without taking the lock from anyone: a
    shared lock, given back at once, which a process starting meanwhile would find briefly in its way."""
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: never trained in, or not a run directory
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_pid(fd)
    finally:
        os.close(fd)
    return None
