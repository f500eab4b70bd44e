"""The interface every on-disk dataset reader provides to ``load_split``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from fastlrwa.data.locate import FileSpec
from fastlrwa.data.split import ArraySplit

Split = Literal["train", "test"]


@dataclass(frozen=True)
class DiskSource:
    """How one dataset is found, read and (with internet) downloaded.

    ``folders(root)`` lists the folders searched, in order; ``needed(split)`` the files a split
    needs there; ``read(files, split)`` turns those files into an ``ArraySplit``;
    ``how_to_get`` tells a user how to get the data by hand (``{root}`` is filled in);
    ``download(root, split)`` fetches it into one of ``folders(root)``.
    """

    folders: Callable[[Path], list[Path]]
    needed: Callable[[Split], tuple[FileSpec, ...]]
    read: Callable[[tuple[Path, ...], Split], ArraySplit]
    how_to_get: str
    download: Callable[[Path, Split], None]


def torchvision_download(dataset_class: str) -> Callable[[Path, Split], None]:
    """A ``download`` through ``torchvision.datasets.<dataset_class>(root, train=...)``, which places the files in
    the folder under ``root`` that its archive creates; torchvision is imported only when downloading."""

    def download(root: Path, split: Split) -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, dataset_class)(str(root), train=split == "train", download=True)

    return download
