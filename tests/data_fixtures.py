"""Writers of small datasets in the exact on-disk formats the real ones use, for the data tests.

Each writer draws fresh random content, writes it where torchvision (or the dataset's own
archive) would put it under ``root``, and returns what it wrote so tests can compare.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image


@dataclass
class Written:
    images: np.ndarray  # as the reader should return them: uint8 [N, C, H, W] before any resize
    labels: np.ndarray  # int64 [N], the true class numbers
    files: list[Path]


def assert_read_as_written(loaded, written: Written, channels: int, size: int) -> None:
    """A split read back as the readers promise (contiguous uint8 images [N, channels, size, size], int64
    labels) and equal to what a writer wrote."""
    assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
    assert loaded.images.shape == (len(written.labels), channels, size, size)
    assert loaded.images.is_contiguous()
    np.testing.assert_array_equal(loaded.images.numpy(), written.images)
    np.testing.assert_array_equal(loaded.labels.numpy(), written.labels)


def write_idx_pair(folder: Path, prefix: str, n: int, *, gz: bool, rng: np.random.Generator) -> Written:
    """``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` (optionally ``.gz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    image_bytes = struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
    label_bytes = struct.pack(">II", 2049, n) + labels.tobytes()
    suffix = ".gz" if gz else ""
    files = [folder / f"{prefix}-images-idx3-ubyte{suffix}", folder / f"{prefix}-labels-idx1-ubyte{suffix}"]
    for path, payload in zip(files, (image_bytes, label_bytes)):
        path.write_bytes(gzip.compress(payload) if gz else payload)
    return Written(images[:, None], labels.astype(np.int64), files)


def _cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """CIFAR's row layout, as its web page documents it: 1024 red, then green, then blue values."""
    return np.stack(
        [np.concatenate([img[:, :, 0].ravel(), img[:, :, 1].ravel(), img[:, :, 2].ravel()]) for img in images_hwc]
    ).astype(np.uint8)


def _dump_python2_style(path: Path, obj: object) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar(root: Path, *, hundred: bool, per_batch: int, rng: np.random.Generator) -> dict[str, Written]:
    """A CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) folder."""
    num_classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    batch_names = (
        {"train": ["train"], "test": ["test"]}
        if hundred
        else {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    )
    label_key = "fine_labels" if hundred else "labels"
    written = {}
    for split, names in batch_names.items():
        all_images, all_labels, files = [], [], []
        for name in names:
            images_hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, num_classes, per_batch)
            batch = {
                "batch_label": f"{name} of fixture",
                label_key: [int(v) for v in labels],
                "data": _cifar_rows(images_hwc),
                "filenames": [f"img_{i}.png" for i in range(per_batch)],
            }
            if hundred:
                batch["coarse_labels"] = [int(v) // 5 for v in labels]
            _dump_python2_style(folder / name, batch)
            all_images.append(images_hwc.transpose(0, 3, 1, 2))
            all_labels.append(labels)
            files.append(folder / name)
        written[split] = Written(np.concatenate(all_images), np.concatenate(all_labels).astype(np.int64), files)
    meta_name, meta_key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    _dump_python2_style(folder / meta_name, {meta_key: [f"class_{i}" for i in range(num_classes)]})
    return written


def write_svhn(folder: Path, split: str, n: int, rng: np.random.Generator) -> Written:
    """``{split}_32x32.mat`` with X as [32, 32, 3, N] and y as [N, 1], digit 0 stored as 10."""
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    digits = rng.integers(0, 10, n)
    digits[:2] = (0, 9)
    stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    path = folder / f"{split}_32x32.mat"
    scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": stored})
    return Written(images, digits.astype(np.int64), [path])


@dataclass
class TinyImageNetFixture:
    folder: Path
    wnids: list[str]  # sorted: class k is wnids[k]
    names: list[str]  # first synonym of each sorted wnid
    train: Written
    test: Written


def _random_jpeg(path: Path, rng: np.random.Generator, grey: bool) -> np.ndarray:
    """Write a 64x64 JPEG (quality 100) and return PIL's own RGB decode of it as [3, 64, 64]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey:
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(path, quality=100)
    else:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=100)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def write_tiny_imagenet(root: Path, rng: np.random.Generator) -> TinyImageNetFixture:
    """A ``tiny-imagenet-200`` folder with three classes, listed out of order in ``wnids.txt``."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    listed = ["n09999999", "n01443537", "n02123045"]
    wnids = sorted(listed)
    (folder / "wnids.txt").write_text("\n".join(listed) + "\n")
    words = {
        "n01443537": "goldfish, Carassius auratus",
        "n02123045": "tabby, tabby cat",
        "n09999999": "fixture class",
        "n00000001": "entity",
    }
    (folder / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in words.items()))

    train_images, train_labels, train_files = [], [], []
    for label, wnid in enumerate(wnids):
        for k in range(label + 2):
            path = folder / "train" / wnid / "images" / f"{wnid}_{k}.JPEG"
            train_images.append(_random_jpeg(path, rng, grey=(k == 0 and label == 1)))
            train_labels.append(label)
            train_files.append(path)
        boxes = folder / "train" / wnid / f"{wnid}_boxes.txt"
        boxes.write_text("".join(f"{wnid}_{k}.JPEG\t0\t0\t63\t63\n" for k in range(label + 2)))

    val_images, val_labels, val_files, lines = [], [], [], []
    for k in range(5):
        label = int(rng.integers(0, len(wnids)))
        path = folder / "val" / "images" / f"val_{k}.JPEG"
        val_images.append(_random_jpeg(path, rng, grey=(k == 3)))
        val_labels.append(label)
        val_files.append(path)
        lines.append(f"val_{k}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))

    return TinyImageNetFixture(
        folder=folder,
        wnids=wnids,
        names=[words[w].split(",")[0] for w in wnids],
        train=Written(np.stack(train_images), np.array(train_labels, dtype=np.int64), train_files),
        test=Written(np.stack(val_images), np.array(val_labels, dtype=np.int64), val_files),
    )
