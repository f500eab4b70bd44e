"""What a DALI pipeline reads: image files with labels (decoded by DALI), or uint8 arrays in memory.

Image-folder datasets (Tiny-ImageNet) become a file list for DALI's file reader, labelled like our
torch reader (sorted wnid index), so the two loaders see the same samples in the same order.
Array datasets (CIFAR, SVHN, MNIST, Fashion-MNIST, digits) are read by ``load_split`` and handed
to DALI's ``external_source`` as ``[N, H, W, C]``, the layout DALI's image operators expect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from fastlrwa.data.catalog import DatasetInfo, dataset_info
from fastlrwa.data.load import load_split
from fastlrwa.data.locate import locate, resolve_root
from fastlrwa.data.source import Split
from fastlrwa.data.split import ArraySplit, CorruptDataError
from fastlrwa.data.tiny_imagenet import TINY_IMAGENET_SOURCE, tiny_imagenet_samples
from fastlrwa.errors import ConfigError


@dataclass(frozen=True)
class ImageFiles:
    """Encoded image files (JPEG, PNG, ...) and their int64 labels, in reading order.

    ``folder`` names the split in error messages.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    info: DatasetInfo
    folder: Path

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class ArrayImages:
    """Decoded images as uint8 ``[N, H, W, C]`` and int64 labels ``[N]``, held in host memory."""

    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo

    @classmethod
    def from_split(cls, split: ArraySplit) -> ArrayImages:
        images = np.ascontiguousarray(split.images.permute(0, 2, 3, 1).numpy())
        return cls(images=images, labels=split.labels.numpy(), info=split.info)

    def __len__(self) -> int:
        return self.images.shape[0]


DaliSource = Union[ImageFiles, ArrayImages]


def _located_tiny_imagenet(split: Split, root: str | os.PathLike | None, download: bool) -> tuple[Path, ...]:
    folders = TINY_IMAGENET_SOURCE.folders(resolve_root(root))
    needed = TINY_IMAGENET_SOURCE.needed(split)
    found = locate(folders, needed)
    if found is None:
        # load_split owns the not-found message and downloading. Without --download it raises before
        # decoding anything; with it, the freshly downloaded split is decoded once by PIL, a one-off
        # cost next to the download itself.
        load_split("tiny-imagenet", split, root=root, download=download)
        found = locate(folders, needed)
    return found


def tiny_imagenet_files(split: Split, *, root: str | os.PathLike | None = None, download: bool = False) -> ImageFiles:
    """The JPEG list of a Tiny-ImageNet split, in the order and with the labels ``load_split`` uses."""
    files = _located_tiny_imagenet(split, root, download)
    samples, info = tiny_imagenet_samples(files, split)
    if not samples:
        raise CorruptDataError(f"{files[2]}: holds no images; re-extract tiny-imagenet-200.zip")
    return ImageFiles(
        paths=tuple(str(path) for path, _ in samples),
        labels=np.array([label for _, label in samples], dtype=np.int64),
        info=info,
        folder=files[0].parent / ("train" if split == "train" else "val"),
    )


def dali_source(
    name: str, split: Split, *, root: str | os.PathLike | None = None, download: bool = False
) -> DaliSource:
    """Split ``train`` or ``test`` of dataset ``name`` as DALI reads it (files or arrays)."""
    dataset_info(name)
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r} for {name}; use 'train' or 'test'")
    if name == "tiny-imagenet":
        return tiny_imagenet_files(split, root=root, download=download)
    return ArrayImages.from_split(load_split(name, split, root=root, download=download))
