"""The batch a ZSKD student step trains on: impressions drawn from the fixed transfer set, augmented, and
re-labelled by the teacher.

ZSKD augments its transfer set (shifts, flips, ...) and labels every augmented image with the teacher's
output; here each batch is drawn at random from the impressions (``rng``, the run's stream, so a resumed
run draws what an uninterrupted one would), shifted by up to ``shift`` pixels (a crop after zero padding,
black in pixel space, the background of the digit and clothing images), flipped where asked, normalised as
the teacher's data were and labelled by the teacher. Everything stays on the device: no host sync.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from fastlrwa.data.augment import random_crop_flip
from fastlrwa.runtime import at_least_float32, autocast_to


class ImpressionBatches:
    """``batches()`` -> (normalised images, teacher logits) from the impressions set with :meth:`use`."""

    def __init__(
        self,
        teacher: nn.Module,
        mean: Tensor,
        std: Tensor,
        *,
        batch_size: int,
        shift: int,
        flip: bool,
        rng: torch.Generator,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.teacher = teacher
        self.mean, self.std = mean, std
        self.batch_size = batch_size
        self.shift, self.flip = shift, flip
        self.rng = rng
        self.autocast_dtype = autocast_dtype
        self.pixels: Tensor | None = None

    def use(self, pixels: Tensor) -> None:
        """The impressions [N, C, H, W] in pixel space [0, 1], on the training device."""
        self.pixels = pixels

    def __call__(self) -> tuple[Tensor, Tensor]:
        if self.pixels is None:
            raise RuntimeError("the impressions are not built yet: call use() first")
        index = torch.randint(self.pixels.shape[0], (self.batch_size,), device=self.pixels.device, generator=self.rng)
        pixels = self.pixels[index]
        if self.shift > 0 or self.flip:
            pixels = random_crop_flip(pixels, padding=self.shift, flip=self.flip, rng=self.rng)
        images = (pixels - self.mean) / self.std
        with torch.no_grad(), autocast_to(images.device.type, self.autocast_dtype):
            teacher_logits = at_least_float32(self.teacher(images))
        return images, teacher_logits
