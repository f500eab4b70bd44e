"""Block shapes and grids for kernels that walk a (rows, cols) matrix in row blocks.

Each program owns ``block_rows`` whole rows and walks their columns in chunks of ``block_cols``,
so every per-row reduction (a softmax, a row sum) finishes inside one program without atomics.
The shapes are heuristics: a tile of about ``tile_elements`` values per input, at least a few
programs per streaming multiprocessor so that small-C problems still fill the GPU.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch._C import _functorch

MAX_BLOCK_COLS = 4096
PROGRAMS_PER_SM = 4


@dataclass(frozen=True)
class RowBlocks:
    """Launch shape for a row-blocked kernel."""

    block_rows: int
    block_cols: int
    num_chunks: int
    num_warps: int
    grid: tuple[int]


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _previous_power_of_2(n: int) -> int:
    return 1 << max(0, n.bit_length() - 1)


@functools.lru_cache(maxsize=None)
def _multiprocessor_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def row_blocks(rows: int, cols: int, device: torch.device, tile_elements: int) -> RowBlocks:
    """Choose block sizes for ``rows`` x ``cols`` on ``device`` (CPU means the interpreter)."""
    block_cols = min(_next_power_of_2(cols), MAX_BLOCK_COLS)
    block_rows = max(1, tile_elements // block_cols)
    block_rows = min(block_rows, _next_power_of_2(rows))
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        min_programs = PROGRAMS_PER_SM * _multiprocessor_count(index)
        block_rows = min(block_rows, max(1, _previous_power_of_2(max(1, rows // min_programs))))
    num_warps = min(16, max(1, block_rows * block_cols // 512))
    return RowBlocks(
        block_rows=block_rows,
        block_cols=block_cols,
        num_chunks=-(-cols // block_cols),
        num_warps=num_warps,
        grid=(-(-rows // block_rows),),
    )


def device_guard(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``tensor``'s GPU the current one, since Triton launches on the current device."""
    if tensor.is_cuda:
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def as_rows(tensor: torch.Tensor) -> torch.Tensor:
    """A (rows, cols) view whose columns are contiguous, copying only when they are not."""
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


def launch_directly(*tensors: torch.Tensor) -> bool:
    """Whether a kernel can be launched on ``tensors`` without going through its custom op.

    The op's dispatch costs about ten times a direct launch, so calls on plain dense tensors skip
    it. Everything else takes the op: FakeTensors (an opaque node for tracing) and the batched
    tensors of ``autograd.grad(is_grads_batched=True)`` (the op's per-sample fallback). Under
    torch.compile no kernel is launched at all (``backend.use_triton``).
    """
    return all(
        type(tensor) is torch.Tensor
        and not _functorch.is_legacy_batchedtensor(tensor)
        and not _functorch.is_functorch_wrapped_tensor(tensor)
        for tensor in tensors
    )


def kernel_op(name: str, launch: Callable, fake: Callable) -> Callable:
    """``launch`` registered as the custom op ``name``, with ``fake`` giving its outputs' shapes to FakeTensor
    tracing, and called directly wherever ``launch_directly`` allows: one dispatch rule for every kernel."""
    op = torch.library.custom_op(name, mutates_args=())(launch)
    op.register_fake(fake)

    @functools.wraps(launch)
    def call(*args):
        return (launch if launch_directly(*(arg for arg in args if isinstance(arg, torch.Tensor))) else op)(*args)

    return call


def input_grad_buffers(
    a: torch.Tensor, b: torch.Tensor, need_a: bool, need_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient buffers shaped like ``a`` and ``b``, an unneeded one empty (a custom op returns tensors)."""
    return a.new_empty(a.shape if need_a else (0,)), b.new_empty(b.shape if need_b else (0,))


def input_grads_shapes(grad_loss: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *options: Any) -> tuple:
    """The fake of every ``*_input_grads`` op (``kernel_op``): its arguments are ``grad_loss, a, b, ...,
    need_a, need_b``, its outputs the two gradient buffers."""
    return input_grad_buffers(a, b, *options[-2:])
