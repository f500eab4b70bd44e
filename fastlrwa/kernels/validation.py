"""Checks on the logits handed to a loss, raised as one-line ConfigErrors."""

from __future__ import annotations

import torch

from fastlrwa.errors import ConfigError


def check_logit_pair(loss_name: str, first: torch.Tensor, second: torch.Tensor, *, needs_class_dim: bool) -> None:
    """Both inputs: floating point, same shape, same device, not empty (and at least 1-D if asked)."""
    if first.shape != second.shape:
        raise ConfigError(
            f"{loss_name}: the two logit tensors must have the same shape, got {tuple(first.shape)} and "
            f"{tuple(second.shape)}; check that student and teacher predict the same number of classes"
        )
    for tensor in (first, second):
        if not tensor.is_floating_point():
            raise ConfigError(
                f"{loss_name}: logits must be floating point, got {tensor.dtype}; cast them with .float()"
            )
    if first.device != second.device:
        raise ConfigError(f"{loss_name}: logits are on {first.device} and {second.device}; move both to one device")
    if first.numel() == 0:
        raise ConfigError(f"{loss_name}: logits are empty (shape {tuple(first.shape)}); pass at least one sample")
    if needs_class_dim and first.dim() == 0:
        raise ConfigError(f"{loss_name}: logits need a class dimension (shape (N, C) or (C,)), got a scalar")
