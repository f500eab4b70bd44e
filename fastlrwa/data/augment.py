"""Augmentation on the device: the train-time random crop and flip of real images, and the random affine maps
(shift, rotation, flip) of synthetic batches."""

from __future__ import annotations

import math

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


def random_affine(
    n: int,
    height: int,
    width: int,
    *,
    shift: int,
    rotate: float,
    flip: bool,
    device: torch.device,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` random affine maps for :func:`affine_warp`, as ``F.affine_grid``'s ``[n, 2, 3]`` matrices.

    Each maps an output pixel to the input point it samples: a rotation about the image centre by an angle
    uniform in ``[-rotate, rotate]`` degrees, a mirror left-right with probability 1/2 where ``flip``, then a
    translation of whole pixels, each axis uniform in ``-shift..shift``. Angles are taken in pixel space, so
    a rotation of a non-square image stays a rotation. Random numbers come from ``rng`` (on ``device``)
    and are drawn for every part, whichever of them is off, so a run draws the same count every step.
    """
    angle = (torch.rand(n, device=device, generator=rng) * 2 - 1) * math.radians(rotate)
    mirror = torch.randint(0, 2, (n,), device=device, generator=rng)
    offsets = torch.randint(-shift, shift + 1, (n, 2), device=device, generator=rng).float()
    sign = 1.0 - 2.0 * mirror.float() if flip else torch.ones(n, device=device)
    cos, sin = angle.cos(), angle.sin()
    # affine_grid's coordinates run over [-1, 1] on each axis: a pixel is 2 / width wide and 2 / height high.
    theta = torch.stack(
        [
            torch.stack([cos * sign, -sin * (height / width), offsets[:, 0] * (2 / width)], dim=1),
            torch.stack([sin * sign * (width / height), cos, offsets[:, 1] * (2 / height)], dim=1),
        ],
        dim=1,
    )
    return theta


def affine_warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image of an ``[N, C, H, W]`` float batch under its map of :func:`random_affine`, bilinear,
    with the border pixels repeated outside the image: a shift by whole pixels without rotation moves the
    pixels unchanged, and no constant fill (zero is not black in a normalised image) is invented."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
