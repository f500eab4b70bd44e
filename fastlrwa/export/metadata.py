"""``meta.json``: what a program needs to feed an exported student and read its logits."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from fastlrwa.data import DATASET_NAMES, dataset_info
from fastlrwa.models import ModelMeta

EXPORT_FORMAT = "fastlrwa-export"
EXPORT_FORMAT_VERSION = 1
HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def class_names(meta: ModelMeta) -> list[str]:
    """The dataset's class names when the checkpoint names a catalogued dataset with as many classes as
    the model predicts, else ``"0"`` .. ``"K-1"`` (Tiny-ImageNet keeps its names in the data folder)."""
    if meta.dataset in DATASET_NAMES:
        names = dataset_info(meta.dataset).class_names
        if len(names) == meta.num_classes:
            return list(names)
    return [str(index) for index in range(meta.num_classes)]


def export_metadata(
    meta: ModelMeta,
    *,
    model_file: str,
    checkpoint: str | os.PathLike,
    checkpoint_sha256: str,
    batch: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """The ``meta.json`` content for a student described by ``meta``.

    ``input_shape`` is ``[C, H, W]`` of one image; ``batch`` is the fixed batch size, or ``None`` when any
    batch size is accepted. Inputs are float32 NCHW, already normalised as ``(x - mean) / std`` per channel
    (``normalization`` is ``None`` when the checkpoint does not record it); outputs are logits ``[N, K]``
    in the order of ``class_names``.
    """
    normalization = None
    if meta.mean is not None and meta.std is not None:
        normalization = {"mean": list(meta.mean), "std": list(meta.std)}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_FORMAT_VERSION,
        "model_file": model_file,
        "arch": meta.arch,
        "num_classes": meta.num_classes,
        "input_shape": [meta.in_channels, meta.image_size, meta.image_size],
        "batch": batch,
        "dtype": "float32",
        "layout": "NCHW",
        "device": device.type,
        "normalization": normalization,
        "dataset": meta.dataset,
        "class_names": class_names(meta),
        "source_checkpoint": {"path": str(checkpoint), "sha256": checkpoint_sha256},
        "torch_version": torch.__version__,
    }
