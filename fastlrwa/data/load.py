"""``load_split``: find a dataset on disk (downloading it on request) and read one split."""

from __future__ import annotations

import os

from fastlrwa.data.catalog import dataset_info
from fastlrwa.data.cifar import CIFAR10_SOURCE, CIFAR100_SOURCE
from fastlrwa.data.digits import load_digits_split
from fastlrwa.data.idx import FASHION_MNIST_SOURCE, MNIST_SOURCE
from fastlrwa.data.locate import describe_search, locate, resolve_root
from fastlrwa.data.source import DiskSource, Split
from fastlrwa.data.split import ArraySplit
from fastlrwa.data.svhn import SVHN_SOURCE
from fastlrwa.data.tiny_imagenet import TINY_IMAGENET_SOURCE
from fastlrwa.errors import ConfigError, DataNotFoundError

_SOURCES: dict[str, DiskSource] = {
    "mnist": MNIST_SOURCE,
    "fashion-mnist": FASHION_MNIST_SOURCE,
    "cifar10": CIFAR10_SOURCE,
    "cifar100": CIFAR100_SOURCE,
    "svhn": SVHN_SOURCE,
    "tiny-imagenet": TINY_IMAGENET_SOURCE,
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_split(
    name: str,
    split: Split,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> ArraySplit:
    """Read split ``train`` or ``test`` of dataset ``name`` into memory as uint8 images.

    ``root`` defaults to ``$FASTLRWA_DATA``, else ``~/.cache/fastlrwa/data``; each dataset's
    module lists the folders searched under it (Fashion-MNIST also tries Debian's
    ``/usr/share/datasets/fashion-mnist``). ``digits`` ships with scikit-learn and needs no root.
    With ``download=True`` missing data is fetched into ``root`` through torchvision.

    Raises ConfigError (unknown name or split), DataNotFoundError (not on disk, naming every
    folder searched and how to get the data) or CorruptDataError (a file that cannot be read).
    """
    dataset_info(name)
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r} for {name}; use 'train' or 'test'")
    if name == "digits":
        return load_digits_split(split)

    source = _SOURCES[name]
    data_root = resolve_root(root)
    folders, needed = source.folders(data_root), source.needed(split)
    found = locate(folders, needed)
    if found is None and download:
        try:
            source.download(data_root, split)
        except Exception as exc:  # network, disk and checksum failures all end the same way
            raise DataNotFoundError(
                f"downloading {name} into {data_root} failed ({_one_line(str(exc)) or type(exc).__name__}); "
                f"check the internet connection, or {source.how_to_get.format(root=data_root)}"
            ) from None
        found = locate(folders, needed)
    if found is None:
        raise DataNotFoundError(
            f"{name} {split} split not found ({describe_search(folders, needed)}); "
            f"{source.how_to_get.format(root=data_root)}, or pass --download"
        )
    return source.read(found, split)
