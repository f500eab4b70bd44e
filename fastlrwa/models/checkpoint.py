"""Saving models in the fastlrwa checkpoint format and loading model checkpoints from anyone.

Format (``torch.save`` of plain types and tensors only, so ``torch.load(weights_only=True)`` reads it)::

    {"format": "fastlrwa-model", "version": 1, "meta": ModelMeta.to_plain(), "state_dict": {...},
     "extra": {... plain data ...}}

Loading accepts, besides that format: a bare state_dict, or one wrapped as ``{"state_dict": ...}`` or
``{"model": ...}`` (as DFKD code bases save them), for a registered or torchvision architecture named by
``arch``; ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) key prefixes are dropped. The class
count and input channels are read from the final Linear's and the first convolution's weights unless
given; a bare state_dict has no image size, so ``image_size`` defaults to 32. A pickled whole module is
loaded only with ``trust_pickle`` and is then rebuilt as a fastlrwa classifier from its state_dict.

For a fastlrwa checkpoint, ``arch`` (and ``num_classes``/``in_channels``/``image_size``) given by the
caller must agree with the metadata: a disagreement is refused rather than resolved, since loading
weights into an architecture they were not trained for fails late or silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fastlrwa.atomic_io import atomic_torch_save
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.models.checkpoint_file import read_checkpoint
from fastlrwa.models.classifier import Classifier
from fastlrwa.models.meta import ModelMeta, plain_copy
from fastlrwa.models.registry import CLASSIFIER_NAMES, build_model

FORMAT_NAME = "fastlrwa-model"
FORMAT_VERSION = 1
WRAPPER_KEYS = ("state_dict", "model")
SAVED_KEY_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_IMAGE_SIZE = 32
PROBE_NUM_CLASSES = 10
PROBE_IN_CHANNELS = 3
LISTED_PROBLEMS = 3


def save_model_checkpoint(
    path: str | os.PathLike, model: nn.Module, meta: ModelMeta, *, extra: dict[str, Any] | None = None
) -> None:
    """Write ``model`` with ``meta`` and plain-data ``extra`` atomically in the fastlrwa format.

    Raises ``ValueError`` when ``meta`` contradicts the classifier and ``TypeError`` when ``extra`` holds
    anything but plain data (neither could be loaded back); ``CheckpointError`` when the file cannot be written.
    """
    if isinstance(model, Classifier):
        saved = (model.arch, model.num_classes, model.in_channels)
        if saved != (meta.arch, meta.num_classes, meta.in_channels):
            raise ValueError(f"meta {meta} does not describe the model (arch, classes, channels = {saved})")
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "meta": meta.to_plain(),
        "state_dict": without_saved_prefixes(model.state_dict()),
        "extra": plain_copy(extra or {}),
    }
    try:
        atomic_torch_save(payload, path)
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({error.strerror}); check the output directory"
        ) from error


def load_checkpoint(
    path: str | os.PathLike, *, arch: str | None = None, trust_pickle: bool = False, arch_flag: str = "--arch"
) -> Classifier:
    """The model of ``load_checkpoint_with_meta``, without its metadata."""
    return load_checkpoint_with_meta(path, arch=arch, trust_pickle=trust_pickle, arch_flag=arch_flag)[0]


def load_checkpoint_with_meta(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    trust_pickle: bool = False,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    arch_flag: str = "--arch",
) -> tuple[Classifier, ModelMeta]:
    """Load a classifier (on the CPU, in train mode) and its metadata from an untrusted checkpoint file.

    See the module docstring for the accepted contents. Every problem (missing, unreadable or corrupt
    file, pickled code without ``trust_pickle``, unknown or disagreeing architecture, weights that do not
    fit) is a ``CheckpointError`` naming the file, the problem and the fix; ``arch_flag`` is how the calling
    command spells its architecture flag (``--arch``, ``train``'s ``--teacher-arch``).
    """
    source = Path(path)
    payload = read_checkpoint(source, trust_pickle=trust_pickle)
    if isinstance(payload, dict) and payload.get("format") == FORMAT_NAME:
        return _load_fastlrwa_format(
            source,
            payload,
            arch,
            arch_flag,
            {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size},
        )
    state_dict, pickled_arch = unwrap_state_dict(source, payload)
    if arch is not None and pickled_arch is not None and arch != pickled_arch:
        _refuse_arch_disagreement(source, arch, pickled_arch, arch_flag)
    chosen_arch = arch or pickled_arch
    if chosen_arch is None:
        raise CheckpointError(
            f"{source}: holds bare weights without an architecture; pass {arch_flag} with the architecture it was "
            f"trained as ({', '.join(CLASSIFIER_NAMES)} or a torchvision model name)"
        )
    size = image_size or DEFAULT_IMAGE_SIZE
    model = _fit_bare_state_dict(source, chosen_arch, state_dict, num_classes, in_channels, size, arch_flag)
    meta = ModelMeta(
        arch=chosen_arch,
        num_classes=model.num_classes,
        in_channels=model.in_channels,
        image_size=size,
        dataset=None,
        mean=None,
        std=None,
    )
    return model, meta


def check_num_classes(meta: ModelMeta, expected: int, dataset: str, path: str | os.PathLike) -> None:
    """Raise ``CheckpointError`` unless the model predicts as many classes as ``dataset`` has."""
    if meta.num_classes != expected:
        raise CheckpointError(
            f"{path}: the model ({meta.arch}) predicts {meta.num_classes} classes but {dataset} has {expected}; "
            f"use a checkpoint trained on {dataset}"
        )


def _load_fastlrwa_format(
    source: Path, payload: dict, arch: str | None, arch_flag: str, requested_sizes: dict[str, int | None]
) -> tuple[Classifier, ModelMeta]:
    version = payload.get("version")
    if type(version) is not int or version < 1:
        raise CheckpointError(
            f"{source}: malformed fastlrwa checkpoint (version {version!r}); re-create it with fastlrwa"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: fastlrwa checkpoint format version {version!r} is not supported (this fastlrwa reads up to "
            f"{FORMAT_VERSION}); upgrade fastlrwa"
        )
    try:
        meta = ModelMeta.from_plain(payload.get("meta"))
    except ValueError as error:
        raise CheckpointError(
            f"{source}: malformed metadata ({error}); re-create the checkpoint with fastlrwa"
        ) from error
    if arch is not None and arch != meta.arch:
        _refuse_arch_disagreement(source, arch, meta.arch, arch_flag)
    for field, requested in requested_sizes.items():
        stored = getattr(meta, field)
        if requested is not None and requested != stored:
            raise CheckpointError(
                f"{source}: the model was made for {field} {stored!r} but {requested!r} is needed "
                f"here; use a checkpoint made for {field} {requested!r}"
            )
    state_dict = payload.get("state_dict")
    if not _is_state_dict(state_dict):
        raise CheckpointError(f"{source}: the fastlrwa checkpoint has no valid state_dict; re-create it with fastlrwa")
    model = _build(source, meta.arch, meta.num_classes, meta.in_channels, meta.image_size)
    load_checked_state_dict(source, model, state_dict, fix="the file is inconsistent; re-create it with fastlrwa")
    return model, meta


def _fit_bare_state_dict(
    source: Path,
    arch: str,
    state_dict: dict[str, torch.Tensor],
    num_classes: int | None,
    in_channels: int | None,
    image_size: int,
    arch_flag: str,
) -> Classifier:
    """Build ``arch`` with the class count and input channels the weights imply, and load them.

    The key names come from a first build (sizes do not change them); it is kept when its guessed
    sizes turn out right, which saves the second build in the common case.
    """
    probe = _build(source, arch, num_classes or PROBE_NUM_CLASSES, in_channels or PROBE_IN_CHANNELS, image_size)
    state_dict = probe.canonical_state_dict(without_saved_prefixes(state_dict))
    fix = f"pass the {arch_flag} it was trained as (not {arch})"
    classes = num_classes or _weight_dim(source, arch, state_dict, probe.head_weight_key, 0, fix)
    channels = in_channels or _weight_dim(source, arch, state_dict, probe.stem_weight_key, 1, fix)
    model = probe
    if (classes, channels) != (probe.num_classes, probe.in_channels):
        model = _build(source, arch, classes, channels, image_size)
    load_checked_state_dict(source, model, state_dict, fix=fix)
    return model


def unwrap_state_dict(source: Path, payload: Any) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state_dict inside ``payload`` (wrapper prefixes kept) and, for a pickled fastlrwa classifier, its
    architecture; ``CheckpointError`` where it holds none."""
    content = payload
    if isinstance(content, dict) and not _is_state_dict(content):
        content = next((content[key] for key in WRAPPER_KEYS if key in content), content)
    pickled_arch = None
    if isinstance(content, nn.Module):
        pickled_arch = content.arch if isinstance(content, Classifier) else None
        content = content.state_dict()
    if not _is_state_dict(content):
        raise CheckpointError(
            f"{source}: holds no model weights (expected a fastlrwa checkpoint, a state_dict, or one under a "
            f"'state_dict' or 'model' key); pass a model checkpoint"
        )
    return dict(content), pickled_arch


def _is_state_dict(content: Any) -> bool:
    return (
        isinstance(content, dict)
        and len(content) > 0
        and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items())
    )


def without_saved_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_without_saved_prefix(key): value for key, value in state_dict.items()}


def _without_saved_prefix(key: str) -> str:
    """Drop wrapper prefixes in any order and nesting (a compiled DataParallel model has both)."""
    while key.startswith(SAVED_KEY_PREFIXES):
        key = next(key.removeprefix(prefix) for prefix in SAVED_KEY_PREFIXES if key.startswith(prefix))
    return key


def _weight_dim(source: Path, arch: str, state_dict: dict[str, torch.Tensor], key: str, dim: int, fix: str) -> int:
    weight = state_dict.get(key)
    if weight is None or weight.dim() <= dim:
        raise CheckpointError(f"{source}: has no weight {key!r} as a {arch} state_dict would; {fix}")
    return weight.shape[dim]


def load_checked_state_dict(
    source: Path, model: nn.Module, state_dict: dict[str, torch.Tensor], fix: str, *, what: str | None = None
) -> None:
    """Load after checking keys and shapes ourselves, so a mismatch is one readable line; ``what`` names the
    model in it (default: the classifier's architecture)."""
    expected = model.state_dict()
    # BatchNorm's step counter is absent from checkpoints of older PyTorch and not needed for inference.
    missing = [key for key in expected if key not in state_dict and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state_dict and state_dict[key].shape != tensor.shape
    ]
    problems = [
        f"{label} {_first_few(items)}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched))
        if items
    ]
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit {what or model.arch} ({'; '.join(problems)}); {fix}")
    model.load_state_dict(state_dict, strict=False)


def _first_few(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_PROBLEMS])
    return shown if len(items) <= LISTED_PROBLEMS else f"{shown} and {len(items) - LISTED_PROBLEMS} more"


def _build(source: Path, arch: str, num_classes: int, in_channels: int, image_size: int) -> Classifier:
    try:
        return build_model(arch, num_classes, in_channels=in_channels, image_size=image_size)
    except ConfigError as error:
        raise CheckpointError(f"{source}: {error}") from error


def _refuse_arch_disagreement(source: Path, requested: str, stored: str, arch_flag: str) -> None:
    raise CheckpointError(
        f"{source}: the checkpoint's architecture is {stored!r} but {arch_flag} {requested} was given; "
        f"drop {arch_flag} or pass {arch_flag} {stored}"
    )
