"""Loading the frozen teacher of a run (which file that is: ``fastlrwa.commands.teacher``): a fastlrwa model
file or state_dict, or a teacher from outside fastlrwa (TorchScript, an exported program, a state_dict of the
user's own class with ``--teacher-factory``), which is checked on a probe batch before any training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from fastlrwa.config.input_space import NO_DATASET
from fastlrwa.config.normalisation import teacher_normalisation
from fastlrwa.config.schema import TeacherConfig, TrainConfig
from fastlrwa.data import DatasetInfo
from fastlrwa.errors import CheckpointError
from fastlrwa.models import ModelMeta, check_num_classes, load_checkpoint_with_meta
from fastlrwa.models.checkpoint_file import UnreadableCheckpointError
from fastlrwa.models.foreign_teacher import ForeignTeacher
from fastlrwa.models.teacher_forms import load_graph_teacher, teacher_form
from fastlrwa.models.user_factory import build_from_factory, load_user_state_dict
from fastlrwa.options import flag_names

# The flags the messages name, from the options table.
FLAGS = flag_names(TrainConfig)

# What a file that is none of them is told (the README's "Distil your own model").
ACCEPTED_FORMS = (
    f"{FLAGS['teacher.path']} takes a fastlrwa model file (fastlrwa pretrain), a state_dict (with "
    f"{FLAGS['teacher.arch']}, or {FLAGS['teacher.factory']} for your own class), a TorchScript file (torch.jit.save) "
    "or a torch.export program (torch.export.save)"
)

# Odd and larger than one, so that a graph exported for a fixed batch of 1 or 2 is caught here, not in training.
PROBE_BATCH = 3


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
    form = teacher_form(path) if path.is_file() else "checkpoint"
    if form != "checkpoint" or config.factory is not None:
        model, meta = load_foreign_teacher(path, form, config, info)
    else:
        try:
            model, meta = _load_fastlrwa_teacher(path, config, info)
        except UnreadableCheckpointError as error:
            raise CheckpointError(f"{error}; {ACCEPTED_FORMS}") from None
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, meta


def load_foreign_teacher(
    path: Path, form: str, config: TeacherConfig, info: DatasetInfo
) -> tuple[nn.Module, ModelMeta]:
    """A TorchScript, exported or factory-built teacher wrapped as a :class:`ForeignTeacher`, checked to map
    ``info``'s input to ``[N, num_classes]`` logits."""
    if config.factory is not None:
        if form != "checkpoint":
            raise CheckpointError(
                f"{path}: is a {form} file, which holds its own model; drop {FLAGS['teacher.factory']}, or pass the "
                "state_dict of the factory's class"
            )
        model = build_from_factory(config.factory)
        load_user_state_dict(path, model, config.factory)
        arch, note = config.factory, ""
    else:
        model, note = load_graph_teacher(path, form, (info.channels, info.image_size, info.image_size))
        arch = form
    if form == "checkpoint":  # a graph keeps the mode it was exported (or converted) in, and cannot be switched
        model.eval()
    mean, std = teacher_normalisation(config, info)
    teacher = ForeignTeacher(
        model,
        arch=arch,
        num_classes=info.num_classes,
        in_channels=info.channels,
        dataset_norm=(info.mean, info.std),
        teacher_norm=(mean, std),
        note=note,
    )
    _check_output(teacher, path, info)
    meta = ModelMeta(
        arch=arch,
        num_classes=info.num_classes,
        in_channels=info.channels,
        image_size=info.image_size,
        dataset=None,
        mean=mean,
        std=std,
    )
    return teacher, meta


def _check_output(teacher: ForeignTeacher, path: Path, info: DatasetInfo) -> None:
    shape = (PROBE_BATCH, info.channels, info.image_size, info.image_size)
    described = info.name == NO_DATASET  # by --in-channels and --image-size, not by a dataset
    declared = f"{info.channels}x{info.image_size}x{info.image_size} {'' if described else info.name + ' '}images"
    try:
        with torch.no_grad():
            logits = teacher(torch.randn(shape))
    except Exception as error:  # the user's model may raise anything on an input it does not take
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"teacher {path} fails on a batch of {PROBE_BATCH} {declared} ({type(error).__name__}: {first}); "
            + (
                f"pass the {FLAGS['data.in_channels']} and {FLAGS['data.image_size']} it takes (an exported one "
                "needs a dynamic batch dimension)"
                if described
                else "use a teacher for this input (an exported one with a dynamic batch dimension)"
            )
        ) from None
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if described and isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == PROBE_BATCH:
        if logits.shape[1] != info.num_classes:
            raise CheckpointError(
                f"teacher {path} gives {logits.shape[1]} logits per image, and {FLAGS['data.num_classes']} says "
                f"{info.num_classes}; pass {FLAGS['data.num_classes']} {logits.shape[1]}"
            )
    if got != (PROBE_BATCH, info.num_classes):
        raise CheckpointError(
            f"teacher {path} gives {got} on a batch of {PROBE_BATCH} {declared}, not [N, {info.num_classes}] "
            f"logits; use a teacher whose forward returns one logit per {info.name} class"
        )


def _load_fastlrwa_teacher(path: Path, config: TeacherConfig, info: DatasetInfo) -> tuple[nn.Module, ModelMeta]:
    model, meta = load_checkpoint_with_meta(
        path,
        arch=config.arch,
        trust_pickle=config.trust_pickle,
        image_size=info.image_size,
        arch_flag=FLAGS["teacher.arch"],
    )
    if meta.dataset is not None and meta.dataset != info.name and not config.cross_dataset:
        raise CheckpointError(
            f"teacher {path} was trained on {meta.dataset}, not {info.name}; pass {FLAGS['data.dataset']} "
            f"{meta.dataset}, a teacher trained on {info.name}, or {FLAGS['teacher.cross_dataset']} if you mean to "
            f"distil it on {info.name}"
        )
    check_num_classes(meta, info.num_classes, info.name, path)
    if meta.in_channels != info.channels or meta.image_size != info.image_size:
        raise CheckpointError(
            f"teacher {path} takes {meta.in_channels}x{meta.image_size}x{meta.image_size} inputs but {info.name} is "
            f"{info.channels}x{info.image_size}x{info.image_size}; use a teacher trained on {info.name}"
        )
    return model, meta
