"""A dataset split kept on the training device as uint8, normalised per batch."""

from __future__ import annotations

import torch

from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.data.split import ArraySplit


class DeviceImageSet:
    """A split held on a device as uint8 (labels int64), normalised on the fly.

    uint8 keeps a quarter of the float32 footprint on the device (CIFAR's 50k training images:
    150 MiB) and batches are gathered with device-side indices, so a training step never waits
    for the host.
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, split: ArraySplit, device: torch.device | str) -> None:
        self.info = split.info
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        shape = (1, self.info.channels, 1, 1)
        self.mean = torch.tensor(self.info.mean, dtype=torch.float32, device=self.images.device).view(shape)
        self.std = torch.tensor(self.info.std, dtype=torch.float32, device=self.images.device).view(shape)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """float32 ``(x / 255 - mean) / std`` of a uint8 ``[N, C, H, W]`` batch on this set's device."""
        if images_u8.dtype != torch.uint8:
            raise TypeError(f"normalize expects uint8 pixels, got {images_u8.dtype}")
        return (images_u8.to(torch.float32) / 255.0 - self.mean) / self.std

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images and labels at ``index`` (an int64 tensor on this set's device)."""
        return self.normalize(self.images.index_select(0, index)), self.labels.index_select(0, index)
