"""The BatchNorm layers of a network that keep running statistics, found in one place.

Four parts of the trainer look for them: DFQ's statistics prior, the updates that must leave the
statistics alone (``frozen_running_stats``), the distributed averaging and the checkpoint of each
rank's statistics. A layer built with ``track_running_stats=False`` has none and is skipped by all.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
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


def train_batchnorm_per_chunk(
    x: torch.Tensor, layer: _BatchNorm, chunks: int, scales: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """``layer``'s train-mode forward on each of ``chunks`` equal row blocks of ``x`` in turn, as one tensor.

    Each block is normalised with its own batch statistics and moves the running statistics once, in order, as
    ``chunks`` separate calls of ``layer`` would; block ``k``'s output is also multiplied by ``scales[k]``
    (0-dim, positive: folded into the affine weight and bias). Without gradient: the blocks are written into
    one preallocated tensor (no concatenation), a path autograd does not record; under ``torch.compile`` they
    are concatenated instead, which Inductor fuses.
    """
    if torch.is_grad_enabled():
        raise RuntimeError("train_batchnorm_per_chunk runs without gradient (wrap it in torch.no_grad())")
    blocks = x.chunk(chunks)
    if len(blocks) != chunks or blocks[0].shape != blocks[-1].shape:
        raise ValueError(f"{x.shape[0]} rows do not split into {chunks} equal chunks")
    compiling = torch.compiler.is_compiling()
    out = None if compiling else torch.empty_like(x)
    parts: list[torch.Tensor] = []
    for k, block in enumerate(blocks):
        weight, bias = layer.weight, layer.bias
        if scales is not None:
            weight = scales[k].expand(x.shape[1]) if weight is None else weight * scales[k]
            bias = None if bias is None else bias * scales[k]
        momentum = layer.momentum
        if layer.training and layer.track_running_stats:
            layer.num_batches_tracked.add_(1)
            if momentum is None:  # a cumulative average, as BatchNorm computes it
                momentum = 1.0 / float(layer.num_batches_tracked)
        momentum = 0.0 if momentum is None else momentum
        if compiling:
            parts.append(
                F.batch_norm(block, layer.running_mean, layer.running_var, weight, bias, True, momentum, layer.eps)
            )
            continue
        stats_dtype = next(t.dtype for t in (layer.running_mean, weight, block) if t is not None)
        scratch = (block.new_empty(0, dtype=stats_dtype), block.new_empty(0, dtype=stats_dtype))
        torch.native_batch_norm(
            block,
            weight,
            bias,
            layer.running_mean,
            layer.running_var,
            True,
            momentum,
            layer.eps,
            out=(out[k * block.shape[0] : (k + 1) * block.shape[0]], *scratch),
        )
    return torch.cat(parts) if compiling else out
