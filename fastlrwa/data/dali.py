"""``--loader dali``: teacher-training batches and evaluation splits read through NVIDIA DALI.

DALI is an optional extra (``pip install 'fastlrwa[dali]'``); it is imported only when one of these
is used, and its absence is a one-line ConfigError. ``DaliTrainBatches`` stands in for the default
device-resident batches of ``fastlrwa pretrain``; ``load_split_dali`` returns the same
``ArraySplit`` as ``load_split`` (image files decoded by DALI, on the GPU when there is one).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator

import torch

from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.data.dali_pipeline import IMAGES, LABELS, READER_NAME, SHAPES, PipelineOptions, build_pipeline
from fastlrwa.data.dali_runtime import dali_device_id, require_dali
from fastlrwa.data.dali_sources import DaliSource, ImageFiles, dali_source
from fastlrwa.data.load import load_split
from fastlrwa.data.source import Split
from fastlrwa.data.split import ArraySplit, CorruptDataError, checked_split
from fastlrwa.errors import ConfigError

CROP_PADDING = 4
LOADERS = ("torch", "dali")


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _dali_reason(error: RuntimeError) -> str:
    # DALI's message is a multi-line report whose cause follows the line "encountered:".
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:
        return lines[lines.index("encountered:") + 1]
    return lines[0] if lines else type(error).__name__


@contextmanager
def _reading(source: DaliSource) -> Iterator[None]:
    """Turn DALI's failure to read or decode an image file into a one-line CorruptDataError.

    DALI's message does not name the file; the torch loader, which decodes file by file, does.
    Errors on in-memory arrays are not the user's data and propagate unchanged.
    """
    if not isinstance(source, ImageFiles):
        yield
        return
    try:
        yield
    except RuntimeError as error:
        raise CorruptDataError(
            f"{source.folder}: DALI could not read an image ({_dali_reason(error)}); "
            "run with --loader torch to name the unreadable file, then re-extract the dataset"
        ) from None


def _iterator(source: DaliSource, options: PipelineOptions, device_id: int | None, *, auto_reset: bool):
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    pipe, names = build_pipeline(source, options, device_id)
    return DALIGenericIterator(
        pipe,
        names,
        reader_name=READER_NAME if isinstance(source, ImageFiles) else None,
        last_batch_policy=LastBatchPolicy.PARTIAL,
        auto_reset=auto_reset,
    )


class DaliTrainBatches:
    """Teacher-training batches from a DALI pipeline, one epoch at a time.

    Each step yields normalised float32 images ``[B, C, H, W]`` and int64 labels ``[B]`` on
    ``device``; an epoch is one pass over ``source`` (the last batch is the remainder), in a new
    seeded order per epoch when ``shuffle``. With ``augment`` the dataset's standard augmentation
    is applied (``DatasetInfo.augment``: random crop after zero padding by 4; ``flip``: random
    mirror), drawn by DALI from ``seed``. Operators run on the GPU when ``device`` is CUDA.
    """

    info: DatasetInfo
    steps_per_epoch: int

    def __init__(
        self,
        source: DaliSource,
        *,
        batch_size: int,
        device: torch.device | str,
        seed: int,
        augment: bool = True,
        shuffle: bool = True,
        num_threads: int | None = None,
    ) -> None:
        require_dali()
        device_id = dali_device_id(torch.device(device))
        options = PipelineOptions(
            batch_size=batch_size,
            seed=seed,
            shuffle=shuffle,
            crop_padding=CROP_PADDING if augment and source.info.augment else None,
            flip=augment and source.info.flip,
            normalize=True,
            num_threads=num_threads or _default_threads(),
        )
        self.info = source.info
        self.steps_per_epoch = math.ceil(len(source) / batch_size)
        self._source = source
        self._num_samples = len(source)
        with _reading(source):
            self._batches = _iterator(source, options, device_id, auto_reset=True)

    def __len__(self) -> int:
        return self._num_samples

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The ``steps_per_epoch`` batches of the next epoch."""
        with _reading(self._source):
            for (batch,) in self._batches:
                yield batch[IMAGES], batch[LABELS].view(-1).to(torch.int64)


def _check_image_sizes(source: ImageFiles, shapes: torch.Tensor) -> None:
    size = source.info.image_size
    expected = torch.tensor([size, size, source.info.channels], dtype=shapes.dtype)
    wrong = (shapes != expected).any(dim=1).nonzero().flatten()
    if len(wrong):
        height, width, _ = shapes[wrong[0]].tolist()
        raise CorruptDataError(
            f"{source.paths[wrong[0]]}: image is {width}x{height}, {source.info.name} images are {size}x{size}"
        )


def load_split_dali(
    name: str,
    split: Split,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    num_threads: int | None = None,
) -> ArraySplit:
    """Split ``train`` or ``test`` of dataset ``name`` read through DALI, without augmentation.

    The result is what ``load_split`` returns (uint8 ``[N, C, H, W]``, int64 labels, in the same
    order) except that the tensors live on ``device``: image files are decoded there (nvJPEG on
    a GPU). Raises what ``load_split`` raises, and ConfigError when DALI is not installed.
    """
    require_dali()
    device_id = dali_device_id(torch.device(device))
    source = dali_source(name, split, root=root, download=download)
    files = isinstance(source, ImageFiles)
    options = PipelineOptions(
        batch_size=batch_size,
        seed=0,
        shuffle=False,
        crop_padding=None,
        flip=False,
        normalize=False,
        with_shapes=files,
        num_threads=num_threads or _default_threads(),
    )
    images, labels, shapes = [], [], []
    with _reading(source):
        for (batch,) in _iterator(source, options, device_id, auto_reset=False):
            images.append(batch[IMAGES])
            labels.append(batch[LABELS].view(-1))
            if files:
                shapes.append(batch[SHAPES])
    if files:
        _check_image_sizes(source, torch.cat(shapes))
    where = str(source.folder) if files else f"{name} {split} split"
    return checked_split(torch.cat(images), torch.cat(labels).to(torch.int64), source.info, where)


def check_loader(loader: str) -> None:
    """ConfigError unless ``loader`` is one of ``LOADERS`` and usable here (``dali``: DALI installed).

    Commands call it first, so a missing DALI is reported before any data is read.
    """
    if loader not in LOADERS:
        raise ConfigError(f"--loader {loader!r} is not a loader; use {' or '.join(LOADERS)}")
    if loader == "dali":
        require_dali()


def load_split_with(
    loader: str,
    name: str,
    split: Split,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    device: torch.device | str = "cpu",
) -> ArraySplit:
    """``load_split`` for loader ``torch`` (on the host), ``load_split_dali`` for ``dali`` (on ``device``)."""
    check_loader(loader)
    if loader == "dali":
        return load_split_dali(name, split, root=root, download=download, device=device)
    return load_split(name, split, root=root, download=download)
