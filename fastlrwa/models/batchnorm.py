"""The BatchNorm layers of a network that keep running statistics, found in one place.

Four parts of the trainer look for them: DFQ's statistics prior, the updates that must leave the
statistics alone (``frozen_running_stats``), the distributed averaging and the checkpoint of each
rank's statistics. A layer built with ``track_running_stats=False`` has none and is skipped by all.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def tracked_batchnorms(module: nn.Module) -> Iterator[tuple[str, _BatchNorm]]:
    """``(qualified name, layer)`` of every BatchNorm layer of ``module`` that keeps running statistics."""
    for name, layer in module.named_modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            yield name, layer


def buffer_name(prefix: str, name: str) -> str:
    """The state-dict key of buffer ``name`` of the layer called ``prefix`` (``""``: the module itself)."""
    return f"{prefix}.{name}" if prefix else name


def batchnorm_running_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    """The running means and variances of ``module``'s BatchNorm layers (the live buffers), by state-dict name."""
    stats: dict[str, torch.Tensor] = {}
    for prefix, layer in tracked_batchnorms(module):
        stats[buffer_name(prefix, "running_mean")] = layer.running_mean
        stats[buffer_name(prefix, "running_var")] = layer.running_var
    return stats
