"""CIFAR-10 and CIFAR-100 from the python pickle batches torchvision downloads.

Each batch is a dict with ``data`` (uint8 ``[N, 3072]``: the red, green and blue 32x32 planes
of each image in turn) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fastlrwa.data.catalog import dataset_info
from fastlrwa.data.locate import FileSpec
from fastlrwa.data.numpy_pickle import load_numpy_pickle
from fastlrwa.data.source import DiskSource, Split, torchvision_download
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split

_CIFAR10_FILES: dict[Split, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR100_FILES: dict[Split, tuple[str, ...]] = {"train": ("train",), "test": ("test",)}


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_numpy_pickle(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise CorruptDataError(f"{path}: expected a dict with 'data' and {label_key!r}; the file is not a CIFAR batch")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise CorruptDataError(
            f"{path}: data {data.dtype} {list(data.shape)} with {labels.size} labels, expected uint8 "
            f"[N, 3072] and N labels; the file is truncated or not a CIFAR batch"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _reader(name: str, label_key: str) -> Callable[[tuple[Path, ...], Split], ArraySplit]:
    info = dataset_info(name)

    def read(files: tuple[Path, ...], split: Split) -> ArraySplit:
        batches = [_read_batch(path, label_key) for path in files]
        images = torch.from_numpy(np.concatenate([b[0] for b in batches]))
        labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
        return checked_split(images, labels, info, ", ".join(str(p) for p in files))

    return read


def _source(name: str, archive: str, folder: str, files: dict[Split, tuple[str, ...]], label_key: str) -> DiskSource:
    """CIFAR-10 or -100: the batches ``files`` in ``root/folder``, which ``archive`` (torchvision's download too)
    extracts into."""
    return DiskSource(
        folders=lambda root: [root / folder],
        needed=lambda split: tuple(FileSpec((file,)) for file in files[split]),
        read=_reader(name, label_key),
        how_to_get=f"extract {archive} into {{root}}/ (it creates {folder}/)",
        download=torchvision_download(name.upper()),  # torchvision.datasets.CIFAR10 and CIFAR100
    )


CIFAR10_SOURCE = _source("cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py", _CIFAR10_FILES, "labels")
CIFAR100_SOURCE = _source("cifar100", "cifar-100-python.tar.gz", "cifar-100-python", _CIFAR100_FILES, "fine_labels")
