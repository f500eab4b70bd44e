"""Where fastlrwa writes: the per-user cache, and the check that an output location can be written.

Torch-free, so a command checks its outputs in the first second, before any work or heavy import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastlrwa.errors import ConfigError

CACHE_ENV = "FASTLRWA_CACHE"


def user_cache_dir() -> Path:
    """Per-user cache for cached teachers and the TorchInductor cache (``$FASTLRWA_CACHE`` overrides)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastlrwa"
    )
    return Path(root)


def require_writable_dir(path: str | os.PathLike, flag: str, *, fix: str | None = None) -> None:
    """Raise ``ConfigError`` unless ``path`` is a folder, or can be created as one, that we may write in.

    ``flag`` names the setting in the message; ``fix`` says what to do (default: choose another ``flag``).
    """
    _require_writable(path, Path(os.path.abspath(path)), flag, fix or f"choose another {flag}")


def require_writable_file(path: str | os.PathLike, flag: str) -> None:
    """Raise ``ConfigError`` unless ``path`` can be written as a file (its folder is created if missing)."""
    if Path(path).is_dir():
        raise ConfigError(f"{flag} {path} is a folder; pass a file path")
    _require_writable(path, Path(os.path.abspath(path)).parent, flag, f"choose another {flag}")


def _require_writable(shown: str | os.PathLike, folder: Path, flag: str, fix: str) -> None:
    """Nothing is created: the nearest existing ancestor of ``folder`` is probed by creating and removing a
    temporary file in it, the one test that sees a read-only mount, ACLs and quotas alike (``os.access``
    knows no quotas and answers root by the permission bits)."""
    existing = folder
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == Path(os.path.abspath(shown)) else f"is inside {existing}, which is a file"
        raise ConfigError(f"{flag} {shown} {where}; {fix}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".fastlrwa-write-test-", dir=existing)
    except OSError as error:
        raise ConfigError(f"{flag} {shown}: cannot write in {existing} ({error.strerror}); {fix}") from None
    os.close(handle)
    os.unlink(probe)
