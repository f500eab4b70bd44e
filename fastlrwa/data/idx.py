"""MNIST and Fashion-MNIST from their IDX files (plain or gzip), resized to 32x32.

The IDX bytes are parsed here rather than by torchvision because Debian's
``dataset-fashion-mnist`` package ships ``.gz`` files whose MD5 differs from the one
torchvision checks, although the decompressed contents are the standard ones.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fastlrwa.data.catalog import dataset_info
from fastlrwa.data.locate import FileSpec
from fastlrwa.data.resize import resize_to_uint8
from fastlrwa.data.source import DiskSource, Split, torchvision_download
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_SIDE = 28


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDataError(f"{path}: cannot be read ({exc}); re-download the file") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in IDX file ``path``, after checking its magic number and length."""
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise CorruptDataError(f"{path}: not an IDX file with magic number {magic:#010x}; re-download the file")
    shape = tuple(int.from_bytes(data[4 * (1 + d) : 4 * (2 + d)], "big") for d in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise CorruptDataError(
            f"{path}: {len(data)} bytes, the header {list(shape)} promises {expected}; "
            f"the file is truncated or corrupt, re-download it"
        )
    # A copy, because arrays over ``bytes`` are read-only and torch warns about sharing them.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _needed(split: Split) -> tuple[FileSpec, ...]:
    prefix = "train" if split == "train" else "t10k"
    return tuple(
        FileSpec((f"{prefix}-{kind}", f"{prefix}-{kind}.gz")) for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )


def _reader(name: str) -> Callable[[tuple[Path, ...], Split], ArraySplit]:
    info = dataset_info(name)

    def read(files: tuple[Path, ...], split: Split) -> ArraySplit:
        images_path, labels_path = files
        images = read_idx(images_path, _IMAGES_MAGIC)
        labels = read_idx(labels_path, _LABELS_MAGIC)
        if images.shape[1:] != (_SIDE, _SIDE):
            raise CorruptDataError(
                f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, {name} is "
                f"{_SIDE}x{_SIDE}; the file is not {name}"
            )
        resized = resize_to_uint8(torch.from_numpy(images).unsqueeze(1), info.image_size)
        return checked_split(resized, torch.from_numpy(labels), info, f"{images_path} + {labels_path}")

    return read


MNIST_SOURCE = DiskSource(
    folders=lambda root: [root / "MNIST" / "raw", root / "mnist", root],
    needed=_needed,
    read=_reader("mnist"),
    how_to_get="put the IDX files in {root}/MNIST/raw/",
    download=torchvision_download("MNIST"),
)

FASHION_MNIST_SOURCE = DiskSource(
    folders=lambda root: [root / "FashionMNIST" / "raw", root / "fashion-mnist", root, DEBIAN_FASHION_MNIST_DIR],
    needed=_needed,
    read=_reader("fashion-mnist"),
    how_to_get=(
        "install it with `apt-get install -y dataset-fashion-mnist`, or put the IDX files in {root}/FashionMNIST/raw/"
    ),
    download=torchvision_download("FashionMNIST"),
)
