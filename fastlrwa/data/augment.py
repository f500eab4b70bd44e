"""Standard train-time augmentation (random crop after zero padding, horizontal flip), batched on the device."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastlrwa.errors import ConfigError


def random_crop_flip(
    images: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample random crop and optional horizontal flip of an ``[N, C, H, W]`` batch.

    Each image is zero padded by ``padding`` on every side and an ``H x W`` window is cut at a
    uniformly random offset; with ``flip`` each image is mirrored with probability 1/2. This is
    torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` drawn independently
    per sample, done as one gather with no per-sample Python loop. Random numbers come from
    ``rng`` (a random-number generator on the batch's device) or the device's default one.
    Works for uint8 and float batches; the output has the input's dtype and device.
    """
    if images.dim() != 4:
        raise ConfigError(f"random_crop_flip expects an [N, C, H, W] batch, got shape {list(images.shape)}")
    if padding < 0:
        raise ConfigError(f"crop padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_w = w + 2 * padding

    top = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=rng)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=rng)
    rows = top + torch.arange(h, device=device)
    cols = left + torch.arange(w, device=device)
    if flip:
        mirrored = torch.randint(0, 2, (n, 1), device=device, generator=rng).bool()
        cols = torch.where(mirrored, cols.flip(1), cols)

    flat_index = (rows.unsqueeze(2) * padded_w + cols.unsqueeze(1)).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, flat_index).view(n, c, h, w)
