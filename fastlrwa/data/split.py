"""One split of a dataset held in host memory, and the checks every reader's output passes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.errors import UserFacingError


class CorruptDataError(UserFacingError):
    """A data file exists but does not hold what its format promises."""

    exit_code = 2


@dataclass
class ArraySplit:
    """Images as uint8 ``[N, C, H, W]`` (contiguous, at ``info.image_size``), labels int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo


def checked_split(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, source: str) -> ArraySplit:
    """Build an ``ArraySplit`` after checking it fits ``info``; ``source`` names the files in errors."""
    size = info.image_size
    expected = (info.channels, size, size)
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise CorruptDataError(
            f"{source}: expected uint8 images of shape [N, {', '.join(map(str, expected))}], "
            f"got {images.dtype} {list(images.shape)}; the files are not {info.name} data"
        )
    if len(images) == 0:
        raise CorruptDataError(f"{source}: holds no images; re-extract or re-download {info.name}")
    labels = labels.to(torch.int64)
    if labels.shape != (len(images),):
        raise CorruptDataError(
            f"{source}: {len(images)} images but labels of shape {list(labels.shape)}; "
            f"the files are truncated or mismatched, re-extract or re-download {info.name}"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= info.num_classes:
        raise CorruptDataError(
            f"{source}: labels span {low}..{high}, outside 0..{info.num_classes - 1}; "
            f"the files are not {info.name} data"
        )
    return ArraySplit(images=images.contiguous(), labels=labels.contiguous(), info=info)
