"""One training process per run directory: an exclusive ``fcntl.flock`` on ``RUN/.lock``.

The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a killed run
never leaves a stale lock behind; the file itself stays and only records the holder's pid for the
message a second process gets. Readers (``report``, ``evaluate``) never take it.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastlrwa.errors import ConfigError
from fastlrwa.trainer.write_guard import guarded_write

LOCK_FILE = ".lock"


class RunLockedError(ConfigError):
    """Another process trains in this run directory."""


@contextmanager
def run_dir_lock(root: Path) -> Iterator[None]:
    """Hold the run directory ``root`` for this process, or raise ``RunLockedError`` at once."""
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunLockedError(
                f"{root} is in use by another fastlrwa process (pid {holder}); wait for it to end or stop it, "
                "or choose another --out"
            ) from None
        try:
            with guarded_write(lock, "nothing of this run was written", "run the same command again"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            yield
        finally:
            # A run that failed before writing anything leaves no folder behind, as without the lock.
            if created and os.listdir(root) == [LOCK_FILE]:
                lock.unlink()
                root.rmdir()
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
