"""Resizing small greyscale sets (MNIST 28x28, digits 8x8) to the 32x32 the models take."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows per interpolation call: bounds the float32 working copy to a few tens of MiB.
_CHUNK = 8192


def resize_to_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[N, C, h, w]`` pixel values in [0, 255] to uint8 ``[N, C, size, size]``.

    ``align_corners=False`` without antialiasing, then round to nearest. For upsampling this is
    the same filter as PIL's ``Image.resize(..., BILINEAR)``, which is what torchvision's
    ``Resize((32, 32))`` applies to MNIST in DAFL.
    """
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float32)
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        out[start : start + _CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
