"""vmap rules for the loss Functions: fold the vmapped dimension into the rows.

Every loss here reduces rows into ``num_groups`` equal groups of consecutive rows. A vmapped call
over a batch of B is the same computation on B times the rows with B times the groups, so a vmap
rule moves the batch dimension to the front, flattens it into the rows and calls the Function
once: one kernel launch for the whole batch.
"""

from __future__ import annotations

from typing import Sequence

import torch


def fold(batch_size: int, in_dims: Sequence[int | None], tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Move each tensor's vmapped dim (or a broadcast copy, where it has none) into its first dim."""
    folded = []
    for tensor, dim in zip(tensors, in_dims):
        batched = tensor.movedim(dim, 0) if dim is not None else tensor.expand(batch_size, *tensor.shape)
        folded.append(batched.flatten(0, 1))
    return folded


def unfold(batch_size: int, tensor: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """Split a folded first dim back into (batch, rest); an empty placeholder stays unbatched."""
    if tensor.numel() == 0:
        return tensor, None
    return tensor.unflatten(0, (batch_size, -1)), 0
