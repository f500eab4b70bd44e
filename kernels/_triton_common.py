"""What the Triton kernel modules share: the accumulator precision."""

from __future__ import annotations

import torch
import triton.language as tl


def accumulator_dtype(*tensors: torch.Tensor) -> tuple[tl.dtype, torch.dtype]:
    """fp64 accumulation when an input is fp64 (what the float64 tests check), fp32 otherwise."""
    if any(tensor.dtype == torch.float64 for tensor in tensors):
        return tl.float64, torch.float64
    return tl.float32, torch.float32
