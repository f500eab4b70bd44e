"""Finding the frozen teacher: a given file, or the cached teacher for the dataset (trained on first use)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from fastlrwa.config.presets import PRETRAIN_PRESETS, pretrain_config
from fastlrwa.config.schema import TeacherConfig
from fastlrwa.data import DatasetInfo
from fastlrwa.errors import CheckpointError
from fastlrwa.models import ModelMeta, check_num_classes, load_checkpoint_with_meta
from fastlrwa.runtime import user_cache_dir
from fastlrwa.trainer.pretrain import pretrain_teacher

# Datasets whose teacher trains in minutes on a CPU; for the others a teacher file must be given.
AUTO_PRETRAIN_DATASETS = ("digits", "mnist", "fashion-mnist")


def cached_teacher_path(dataset: str, arch: str) -> Path:
    return user_cache_dir() / "teachers" / f"{dataset}-{arch}" / "model.pt"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_teacher_path(config: TeacherConfig, info: DatasetInfo, *, data_root: str | None, seed: int,
                         progress: bool, log: Callable[[str], None]) -> Path:
    """The teacher file to use; pretrains and caches the dataset's default teacher when none is given."""
    if config.path is not None:
        path = Path(config.path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"teacher file {path} does not exist; pass --teacher with a model.pt from "
                                  f"`fastlrwa pretrain --dataset {info.name} --out DIR`")
        return path.resolve()
    if info.name not in AUTO_PRETRAIN_DATASETS:
        raise CheckpointError(
            f"no teacher given for {info.name}: pass --teacher FILE, or train one first with "
            f"`fastlrwa pretrain --dataset {info.name} --out teachers/{info.name}` (a GPU is recommended)"
        )
    arch = config.arch or PRETRAIN_PRESETS[info.name]["arch"]
    path = cached_teacher_path(info.name, arch)
    if not path.is_file():
        log(f"no cached {arch} teacher for {info.name}: training one now (once) into {path.parent}")
        pretrain_teacher(pretrain_config(info.name, {"arch": arch, "out": str(path.parent), "data_root": data_root,
                                                 "seed": seed, "progress": progress}))
    return path


def load_frozen_teacher(path: Path, config: TeacherConfig, info: DatasetInfo,
                        device: torch.device) -> tuple[nn.Module, ModelMeta]:
    """The teacher in eval mode with gradients off for its parameters (inputs still get gradients)."""
    model, meta = load_checkpoint_with_meta(path, arch=config.arch, trust_pickle=config.trust_pickle,
                                            image_size=info.image_size)
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
