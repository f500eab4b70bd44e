"""Tiny-ImageNet (200 classes, 64x64 RGB) from the folder ``tiny-imagenet-200.zip`` extracts to.

Layout: ``wnids.txt`` (the class ids), ``words.txt`` (id -> names), ``train/<wnid>/images/*.JPEG``
and ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``. The official test images have
no labels, so our ``test`` split is the labelled ``val`` split. Classes are numbered in sorted
wnid order; a class is named by the first synonym in ``words.txt``.

JPEGs are decoded with PIL in a thread pool (the decoder releases the GIL) on every load; nothing
is cached in the user's data folder. Measured on 2 busy CPU cores: about 1,600 images/s, so
about a minute for the 100,000 training images; it scales with the cores available.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastlrwa.data.catalog import DatasetInfo, dataset_info
from fastlrwa.data.locate import FileSpec
from fastlrwa.data.source import DiskSource, Split
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split

_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_SIDE = 64
_JPEG_SUFFIXES = (".jpeg", ".jpg")


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptDataError(f"{path}: cannot be read ({exc}); re-extract tiny-imagenet-200.zip") from None


def _class_names(wnids: list[str], words_path: Path) -> tuple[str, ...]:
    words = {}
    for line in _read_lines(words_path):
        wnid, _, names = line.partition("\t")
        words[wnid] = names.split(",")[0].strip() or wnid
    return tuple(words.get(wnid, wnid) for wnid in wnids)


def _train_samples(train_dir: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    samples = []
    for label, wnid in enumerate(wnids):
        image_dir = train_dir / wnid / "images"
        if not image_dir.is_dir():
            raise CorruptDataError(
                f"{image_dir}: missing, although {wnid} is listed in wnids.txt; re-extract tiny-imagenet-200.zip"
            )
        files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _JPEG_SUFFIXES)
        samples.extend((path, label) for path in files)
    return samples


def _val_samples(annotations: Path, image_dir: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    samples = []
    for number, line in enumerate(_read_lines(annotations), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise CorruptDataError(
                f"{annotations}: line {number} does not name an image and a class from wnids.txt; "
                f"re-extract tiny-imagenet-200.zip"
            )
        samples.append((image_dir / fields[0], label_of[fields[1]]))
    return samples


def _decode_into(out: np.ndarray, index: int, path: Path) -> None:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptDataError(f"{path}: not a readable image ({exc}); re-extract tiny-imagenet-200.zip") from None
    if pixels.shape != (_SIDE, _SIDE, 3):
        raise CorruptDataError(
            f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, Tiny-ImageNet images are {_SIDE}x{_SIDE}"
        )
    out[index] = pixels.transpose(2, 0, 1)


def _decode_all(paths: list[Path]) -> torch.Tensor:
    # Filled in [N, C, H, W] order directly: a permuted copy afterwards would double the peak
    # memory of the 1.2 GB training split.
    out = np.empty((len(paths), 3, _SIDE, _SIDE), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        # list() drains the results so a decoding error is raised here.
        list(pool.map(partial(_decode_into, out), range(len(paths)), paths))
    return torch.from_numpy(out)


def tiny_imagenet_samples(files: tuple[Path, ...], split: Split) -> tuple[list[tuple[Path, int]], DatasetInfo]:
    """(JPEG path, label) of every image of a located split, labels by sorted wnid, and the split's info.

    ``files`` is what the locator found: wnids.txt, words.txt, then the split's folder (and, for val,
    its annotations). Both readers (PIL here, DALI) list the split through this one function.
    """
    wnids_path, words_path, *split_paths = files
    wnids = sorted(set(_read_lines(wnids_path)))
    if not wnids:
        raise CorruptDataError(f"{wnids_path}: lists no classes; re-extract tiny-imagenet-200.zip")
    info = dataclasses.replace(
        dataset_info("tiny-imagenet"), num_classes=len(wnids), class_names=_class_names(wnids, words_path)
    )
    if split == "train":
        samples = _train_samples(split_paths[0], wnids)
    else:
        samples = _val_samples(split_paths[0], split_paths[1], wnids)
    return samples, info


def _read(files: tuple[Path, ...], split: Split) -> ArraySplit:
    samples, info = tiny_imagenet_samples(files, split)
    images = _decode_all([path for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    wnids_path = files[0]
    return checked_split(images, labels, info, str(wnids_path.parent / ("train" if split == "train" else "val")))


def _needed(split: Split) -> tuple[FileSpec, ...]:
    listing = (FileSpec(("wnids.txt",)), FileSpec(("words.txt",)))
    if split == "train":
        return listing + (FileSpec(("train",), directory=True),)
    return listing + (FileSpec(("val/val_annotations.txt",)), FileSpec(("val/images",), directory=True))


def _download(root: Path, split: Split) -> None:
    # torchvision has no Tiny-ImageNet class; its archive helper checks the MD5 and extracts into
    # ROOT/tiny-imagenet-200/.
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(_URL, download_root=str(root), md5=_MD5)


TINY_IMAGENET_SOURCE = DiskSource(
    folders=lambda root: [root / "tiny-imagenet-200", root],
    needed=_needed,
    read=_read,
    how_to_get=f"download {_URL} and unzip it in {{root}}/",
    download=_download,
)
