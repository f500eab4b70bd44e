"""Where datasets are looked for: the data root and the folders searched inside it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

DATA_ROOT_ENV = "FASTLRWA_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/fastlrwa/data")


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root`` if given, else ``$FASTLRWA_DATA`` if set, else ``~/.cache/fastlrwa/data``."""
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


@dataclass(frozen=True)
class FileSpec:
    """One file (or folder) a split needs, under any of several accepted names (plain or ``.gz``)."""

    names: tuple[str, ...]
    directory: bool = False

    def present(self, path: Path) -> bool:
        return path.is_dir() if self.directory else path.is_file()

    def describe(self) -> str:
        return " or ".join(self.names)


def locate(folders: Sequence[Path], needed: Sequence[FileSpec]) -> tuple[Path, ...] | None:
    """The needed files' paths (in ``needed`` order) in the first folder that holds them all."""
    for folder in folders:
        files = []
        for spec in needed:
            found = next((folder / name for name in spec.names if spec.present(folder / name)), None)
            if found is None:
                break
            files.append(found)
        else:
            return tuple(files)
    return None


def describe_search(folders: Sequence[Path], needed: Sequence[FileSpec]) -> str:
    """``searched: A, B for x, y`` — the part of a not-found message that lists what was tried."""
    return f"searched: {', '.join(str(f) for f in folders)} for {', '.join(spec.describe() for spec in needed)}"
