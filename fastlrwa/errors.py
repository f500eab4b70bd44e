"""Errors that reach the user as one line and an exit code, never as a traceback.

Raise a subclass of ``UserFacingError`` for anything the user can fix (a path, a flag, a file);
the CLI prints ``error: <message>`` and exits with ``exit_code``. The message names the problem
and the fix.
"""

from __future__ import annotations


class UserFacingError(Exception):
    exit_code = 1


class ConfigError(UserFacingError):
    """A flag, preset or config value that cannot be used."""

    exit_code = 2


class DataNotFoundError(UserFacingError):
    """A dataset is not on disk where we looked."""

    exit_code = 2


class CheckpointError(UserFacingError):
    """A checkpoint is missing, corrupt, untrusted or does not fit the task."""

    exit_code = 2


class NonFiniteLossError(UserFacingError):
    """Training produced a NaN or Inf loss; the last good checkpoint is kept."""

    exit_code = 3


class Interrupted(UserFacingError):
    """Ctrl-C: the work stopped at a safe point; the message says what was kept and how to continue."""

    exit_code = 130


class Terminated(Interrupted):
    """SIGTERM (a batch scheduler's stop): handled as Ctrl-C, with the shell's code for it (128 + 15)."""

    exit_code = 143


class RunWriteError(UserFacingError):
    """A file of the run could not be written (a full disk, a quota); the last good checkpoint is kept."""

    exit_code = 4
