"""Loading the frozen teacher of a run (which file that is: ``fastlrwa.commands.teacher``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from fastlrwa.config.schema import TeacherConfig
from fastlrwa.data import DatasetInfo
from fastlrwa.errors import CheckpointError
from fastlrwa.models import ModelMeta, check_num_classes, load_checkpoint_with_meta


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_frozen_teacher(
    path: Path, config: TeacherConfig, info: DatasetInfo, device: torch.device
) -> tuple[nn.Module, ModelMeta]:
    """The teacher in eval mode with gradients off for its parameters (inputs still get gradients).

    A teacher whose metadata names another dataset is refused unless ``config.cross_dataset``: with matching
    shapes it would train to the end on the wrong classes, with nothing but a low accuracy to show for it.
    """
    model, meta = load_checkpoint_with_meta(
        path, arch=config.arch, trust_pickle=config.trust_pickle, image_size=info.image_size, arch_flag="--teacher-arch"
    )
    if meta.dataset is not None and meta.dataset != info.name and not config.cross_dataset:
        raise CheckpointError(
            f"teacher {path} was trained on {meta.dataset}, not {info.name}; pass --dataset {meta.dataset}, a teacher "
            f"trained on {info.name}, or --cross-dataset if you mean to distil it on {info.name}"
        )
    check_num_classes(meta, info.num_classes, info.name, path)
    if meta.in_channels != info.channels or meta.image_size != info.image_size:
        raise CheckpointError(
            f"teacher {path} takes {meta.in_channels}x{meta.image_size}x{meta.image_size} inputs but {info.name} is "
            f"{info.channels}x{info.image_size}x{info.image_size}; use a teacher trained on {info.name}"
        )
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, meta
