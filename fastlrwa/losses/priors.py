"""The teacher priors that keep generated samples "teacher-like" (paper eq. 11-14, DAFL, DFQ).

Each takes the teacher's outputs on a generated batch and returns a 0-dim loss to minimise.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.models.batchnorm import tracked_batchnorms
from fastlrwa.runtime import at_least_float32


def one_hot_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_OH (eq. 12): cross-entropy of the teacher's prediction against its own argmax."""
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1))


def activation_loss(teacher_features: torch.Tensor) -> torch.Tensor:
    """L_A (eq. 13): minus the mean absolute activation of the teacher's last feature map."""
    return -teacher_features.abs().mean()


def batch_entropy_loss(teacher_logits: torch.Tensor, log_base: float = math.e) -> torch.Tensor:
    """L_EM (eq. 14): p_bar . log(p_bar) of the batch-mean teacher softmax (minimising it balances classes).

    The authors' code takes log10; ``log_base`` picks the logarithm (the paper's is natural).
    """
    p_bar = F.softmax(at_least_float32(teacher_logits), dim=1).mean(dim=0)
    return (p_bar * torch.log(p_bar)).sum() / math.log(log_base)


def total_variation_loss(images: torch.Tensor) -> torch.Tensor:
    """R_TV (DeepInversion's image prior, L1 form): the mean absolute difference between vertically and between
    horizontally neighbouring pixels, summed. Small for images made of smooth regions, as real ones are."""
    x = at_least_float32(images)
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def mode_seeking_loss(images: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Minus MSGAN's mode-seeking ratio: the first half of the batch paired with the second, the mean absolute
    difference of each pair's images over that of their latents, averaged over pairs. Minimising it pulls apart
    the images of distinct latents, against a generator that maps every latent to one texture."""
    half = images.shape[0] // 2
    x = at_least_float32(images).flatten(1)
    z = at_least_float32(latents).flatten(1)
    image_distance = (x[:half] - x[half : 2 * half]).abs().mean(dim=1)
    latent_distance = (z[:half] - z[half : 2 * half]).abs().mean(dim=1)
    return -(image_distance / latent_distance).mean()


def adversarial_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """DFQ's disagreement: KL(p_T || p_S), batch mean (the generator maximises it)."""
    return F.kl_div(
        F.log_softmax(at_least_float32(student_logits), dim=1),
        F.log_softmax(at_least_float32(teacher_logits), dim=1),
        reduction="batchmean",
        log_target=True,
    )


class BatchNormStatistics:
    """DFQ's BatchNorm-statistics loss: the batch statistics of the inputs of every teacher BatchNorm layer
    matched to that layer's running statistics.

    Per layer: ``||mu_batch - running_mean||^2 + ||sigma_batch - sqrt(running_var + eps)||^2`` (the form of
    ZeroQ and DeepInversion), averaged over layers. The statistics are taken by forward pre-hooks while
    the teacher runs on the generated batch, so no second teacher forward is needed.
    """

    def __init__(self, teacher: nn.Module) -> None:
        self.layers = [layer for _, layer in tracked_batchnorms(teacher)]
        self._terms: list[torch.Tensor] = []
        self._recording = False

    def _hook(self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor, ...]) -> None:
        if not self._recording:
            return
        x = at_least_float32(inputs[0])
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims)
        std = torch.sqrt(x.var(dim=dims, unbiased=False) + module.eps)
        target_std = torch.sqrt(module.running_var.to(x.dtype) + module.eps)
        self._terms.append(((mean - module.running_mean.to(x.dtype)) ** 2).sum() + ((std - target_std) ** 2).sum())

    @contextmanager
    def recording(self) -> Iterator["BatchNormStatistics"]:
        """Within the block, every teacher forward records its BatchNorm input statistics."""
        handles = [layer.register_forward_pre_hook(self._hook) for layer in self.layers]
        self._terms = []
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False
            for handle in handles:
                handle.remove()

    def loss(self) -> torch.Tensor:
        if not self._terms:
            raise RuntimeError("BatchNormStatistics.loss() called without a recorded teacher forward")
        return torch.stack(self._terms).mean()
