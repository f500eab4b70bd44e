"""What the Triton kernel modules share: row reductions and the accumulator precision.

Loaded like the kernel modules, once per mode (``backend.kernel_module``), so that its
``@triton.jit`` helpers are interpreted exactly when the kernels calling them are.

The reductions call ``tl.reduce`` with triton's own combine functions instead of ``tl.sum`` /
``tl.max``: those are ``@triton.jit`` functions decorated when triton is first imported, and an
interpreted kernel cannot call a compiled one. The interpreter recognises these combine functions
and reduces with numpy without calling them, whichever way triton was imported; compiled, the
code is what ``tl.sum`` / ``tl.max`` generate. ``tl.full`` replaces ``tl.zeros`` for the same reason.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def row_sum(x):
    return tl.reduce(x, 1, tl.standard._sum_combine)


@triton.jit
def row_max(x):
    return tl.reduce(x, 1, tl.standard._elementwise_max)


def accumulator_dtype(*tensors: torch.Tensor) -> tuple[tl.dtype, torch.dtype]:
    """fp64 accumulation when an input is fp64 (what the float64 tests check), fp32 otherwise."""
    if any(tensor.dtype == torch.float64 for tensor in tensors):
        return tl.float64, torch.float64
    return tl.float32, torch.float32
