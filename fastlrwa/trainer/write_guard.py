"""A run file that cannot be written (a full disk, a quota, a read-only mount) ends the run as one line.

``torch.save`` reports a failed write as a ``RuntimeError`` raised while handling the ``OSError`` (an
"enforce fail" in its zip writer) and the student's writer as a ``CheckpointError``; all are recognised by
the ``OSError`` in the exception's chain. The
atomic writers have already removed their temporary file, so nothing partial is left.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastlrwa.errors import RunWriteError


def _os_error_in(error: BaseException) -> OSError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def guarded_write(path: Path, kept: str, resume: str) -> Iterator[None]:
    """Turn a failed write of ``path`` into ``RunWriteError``; ``kept`` says what is still on disk and
    ``resume`` how to continue once the cause is fixed."""
    try:
        yield
    except Exception as error:  # torch and the model writer wrap the OSError in errors of their own
        cause = _os_error_in(error)
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        raise RunWriteError(f"{path} could not be written ({reason}); {kept}; free space, then {resume}") from None
