"""``@jit``: a Triton kernel decorated on first launch, once per mode, and what the kernels share.

Triton reads ``TRITON_INTERPRET`` once, when ``@triton.jit`` decorates a function, and an interpreted
kernel cannot call a compiled helper. So that the variable counts when a kernel is launched (compiled
kernels for the GPU and interpreted ones for the CPU can live in one process: one pytest run, say), ``jit``
keeps the plain function and decorates it per mode on first use, with every ``jit`` function it calls
decorated in the same mode. Triton is imported only then: a machine without it imports the losses and runs
their torch references.

A kernel reads its module's names from that module's *kernel scope*, one per mode: the module's globals with
each ``jit`` function in its mode, ``tl`` bound to ``triton.language`` and each plain number a
``tl.constexpr`` (so ``CLAMP_LOW = 0.01`` serves the torch reference and the kernel alike).

The reductions call ``tl.reduce`` with triton's own combine functions instead of ``tl.sum`` /
``tl.max``: those are ``@triton.jit`` functions decorated when triton is first imported, and an
interpreted kernel cannot call a compiled one. The interpreter recognises these combine functions
and reduces with numpy without calling them, whichever way triton was imported; compiled, the
code is what ``tl.sum`` / ``tl.max`` generate. ``tl.full`` replaces ``tl.zeros`` for the same reason.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .backend import interpreter_requested
from .launch import RowBlocks, device_guard, input_grad_buffers, row_blocks

if TYPE_CHECKING:  # bound in each kernel scope when a kernel is first decorated
    import triton.language as tl


class Kernel:
    """A ``@triton.jit`` function in the mode asked for now: ``kernel[grid](...)`` launches it."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self._decorated: dict[bool, Any] = {}

    def __getitem__(self, grid: tuple[int, ...]) -> Callable:
        return self.in_mode(interpreter_requested())[grid]

    def in_mode(self, interpreted: bool) -> Any:
        """The ``InterpretedFunction`` (``interpreted``) or ``JITFunction`` of this kernel, made once."""
        if interpreted not in self._decorated:
            import triton

            fn = self.fn
            in_scope = types.FunctionType(
                fn.__code__, _kernel_scope(fn.__globals__, interpreted), fn.__name__, fn.__defaults__, fn.__closure__
            )
            in_scope.__qualname__, in_scope.__annotations__ = fn.__qualname__, fn.__annotations__
            with triton.knobs.runtime.scope():
                triton.knobs.runtime.interpret = interpreted
                self._decorated[interpreted] = triton.jit(in_scope)
        return self._decorated[interpreted]


def jit(fn: Callable) -> Kernel:
    """``@triton.jit``, decorated on first launch in the mode ``TRITON_INTERPRET`` asks for then."""
    return Kernel(fn)


_scopes: dict[tuple[int, bool], dict[str, Any]] = {}


def _kernel_scope(module_globals: dict[str, Any], interpreted: bool) -> dict[str, Any]:
    """The names a module's kernels see in one mode (module docstring); made once per module and mode."""
    key = (id(module_globals), interpreted)
    if key not in _scopes:
        import triton.language as language

        scope = _scopes[key] = dict(module_globals, tl=language)
        for name, value in module_globals.items():
            if isinstance(value, Kernel):
                scope[name] = value.in_mode(interpreted)
            elif type(value) in (int, float):
                scope[name] = language.constexpr(value)
    return _scopes[key]


@jit
def row_sum(x):
    return tl.reduce(x, 1, tl.standard._sum_combine)


@jit
def row_max(x):
    return tl.reduce(x, 1, tl.standard._elementwise_max)


@jit
def row_block(rows, BLOCK_ROWS: tl.constexpr):
    """This program's rows: their indices, which of them exist, and the indices in int64 for addressing."""
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    return row, row < rows, row.to(tl.int64)


@jit
def column_chunk(start, row_mask, cols, BLOCK_COLS: tl.constexpr):
    """The columns of the chunk from ``start`` and the mask of the (rows, cols) entries that exist."""
    col = start + tl.arange(0, BLOCK_COLS)
    return col, row_mask[:, None] & (col < cols)[None, :]


@jit
def load_tile(ptr, row64, col, mask, stride, ACC: tl.constexpr):
    """The (rows, cols) tile of a row-major matrix at ``row64`` x ``col``, in the accumulator dtype."""
    return tl.load(ptr + row64[:, None] * stride + col[None, :], mask=mask, other=0.0).to(ACC)


def accumulator_dtype(*tensors: torch.Tensor) -> tuple[Any, torch.dtype]:
    """fp64 accumulation when an input is fp64 (what the float64 tests check), fp32 otherwise."""
    import triton.language as language

    if any(tensor.dtype == torch.float64 for tensor in tensors):
        return language.float64, torch.float64
    return language.float32, torch.float32


def launch_rows(kernel: Kernel, blocks: RowBlocks, a: torch.Tensor, b: torch.Tensor, **arguments: Any) -> None:
    """``kernel`` over the rows of two (rows, cols) matrices with contiguous columns, in ``blocks``: the launch
    every kernel here shares. It passes ``a_ptr``, ``b_ptr``, ``rows``, ``cols``, ``stride_a``, ``stride_b``, ``ACC``,
    ``BLOCK_ROWS`` and ``BLOCK_COLS``; ``arguments`` names the kernel's other parameters."""
    rows, cols = a.shape
    with device_guard(a):
        kernel[blocks.grid](
            a_ptr=a,
            b_ptr=b,
            rows=rows,
            cols=cols,
            stride_a=a.stride(0),
            stride_b=b.stride(0),
            ACC=accumulator_dtype(a, b)[0],
            BLOCK_ROWS=blocks.block_rows,
            BLOCK_COLS=blocks.block_cols,
            num_warps=blocks.num_warps,
            **arguments,
        )


def launch_input_grads(
    kernel: Kernel,
    tile_elements: int,
    grad_loss: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    need_a: bool,
    need_b: bool,
    **arguments: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward launch both losses share: ``kernel`` writes ``grad_loss[group]`` times the loss's gradient
    w.r.t. ``a`` and ``b`` (those asked for; an unneeded one is an empty tensor). It passes ``g_ptr``,
    ``grad_a_ptr``, ``grad_b_ptr``, ``rows_per_group``, ``WRITE_A`` and ``WRITE_B`` besides ``launch_rows``'."""
    grad_a, grad_b = input_grad_buffers(a, b, need_a, need_b)
    if need_a or need_b:
        launch_rows(
            kernel,
            row_blocks(*a.shape, a.device, tile_elements),
            a,
            b,
            g_ptr=grad_loss,
            grad_a_ptr=grad_a,
            grad_b_ptr=grad_b,
            rows_per_group=a.shape[0] // grad_loss.shape[0],
            WRITE_A=need_a,
            WRITE_B=need_b,
            **arguments,
        )
    return grad_a, grad_b
