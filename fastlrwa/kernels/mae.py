"""Mean absolute error between logits (the paper's L_KD, ``F.l1_loss`` semantics), fused.

The student loss of every step and the loss inside LRWA's differentiable inner step, so its
gradient must itself be differentiable: ``_MAEGrad`` computes ``g * sign(s - t) / numel`` in one
kernel and has its own backward (w.r.t. ``g``; zero a.e. w.r.t. the logits) and its own
forward-mode rule (``jvp``), which makes reverse-over-reverse and forward-over-reverse
Hessian-vector products through a network and this loss exact. Under torch.compile the loss is
the torch expression instead (see ``backend.use_triton``).

In this file, top to bottom: the torch reference, the Triton kernels (inputs are (rows, cols) with contiguous
columns; sums accumulate in fp32 for fp32/bf16/fp16 inputs and in fp64 when an input is fp64, the precision
the float64 tests check against) and their launches, the custom ops, and the autograd Functions with their
jvp and vmap rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import backend as backends
from .batching import fold, unfold
from .launch import as_rows, input_grads_shapes, kernel_op, row_blocks
from .triton_jit import (
    accumulator_dtype,
    column_chunk,
    jit,
    launch_input_grads,
    launch_rows,
    load_tile,
    row_block,
    row_sum,
)
from .validation import check_logit_pair

if TYPE_CHECKING:  # bound in the kernels' scope when they are first launched (triton_jit)
    import triton.language as tl


def mae_reference(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """The torch reference: mean |s - t| over all elements, exactly ``F.l1_loss``."""
    return F.l1_loss(student_logits, teacher_logits)


TILE_ELEMENTS = 4096


@jit
def _forward_kernel(
    a_ptr,
    b_ptr,
    row_loss_ptr,
    rows,
    cols,
    stride_a,
    stride_b,
    inv_count,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    row, row_mask, row64 = row_block(rows, BLOCK_ROWS)
    total = tl.full((BLOCK_ROWS, BLOCK_COLS), 0.0, ACC)
    for start in range(0, cols, BLOCK_COLS):
        col, mask = column_chunk(start, row_mask, cols, BLOCK_COLS)
        total += tl.abs(
            load_tile(a_ptr, row64, col, mask, stride_a, ACC) - load_tile(b_ptr, row64, col, mask, stride_b, ACC)
        )
    tl.store(row_loss_ptr + row, row_sum(total) * inv_count, mask=row_mask)


@jit
def _backward_kernel(
    g_ptr,
    a_ptr,
    b_ptr,
    rows,
    cols,
    stride_a,
    stride_b,
    grad_a_ptr,
    grad_b_ptr,
    rows_per_group,
    inv_count,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
    WRITE_A: tl.constexpr,
    WRITE_B: tl.constexpr,
):
    row, row_mask, row64 = row_block(rows, BLOCK_ROWS)
    scale = tl.load(g_ptr + row // rows_per_group, mask=row_mask, other=0.0).to(ACC) * inv_count
    for start in range(0, cols, BLOCK_COLS):
        col, mask = column_chunk(start, row_mask, cols, BLOCK_COLS)
        a = load_tile(a_ptr, row64, col, mask, stride_a, ACC)
        b = load_tile(b_ptr, row64, col, mask, stride_b, ACC)
        # sign(0) = 0, as torch.sign and F.l1_loss's backward have it.
        grad = scale[:, None] * ((a > b).to(ACC) - (a < b).to(ACC))
        offset = row64[:, None] * cols + col[None, :]
        if WRITE_A:
            tl.store(grad_a_ptr + offset, grad.to(grad_a_ptr.dtype.element_ty), mask=mask)
        if WRITE_B:
            tl.store(grad_b_ptr + offset, (-grad).to(grad_b_ptr.dtype.element_ty), mask=mask)


def _launch_row_loss(a: Tensor, b: Tensor, inv_count: float) -> Tensor:
    """Per-row ``sum(|a - b|) * inv_count`` in the accumulator dtype, for (rows, cols) inputs."""
    row_loss = a.new_empty(a.shape[0], dtype=accumulator_dtype(a, b)[1])
    launch_rows(
        _forward_kernel, row_blocks(*a.shape, a.device, TILE_ELEMENTS), a, b, row_loss_ptr=row_loss, inv_count=inv_count
    )
    return row_loss


def _launch_input_grads(
    grad_loss: Tensor, a: Tensor, b: Tensor, inv_count: float, need_a: bool, need_b: bool
) -> tuple[Tensor, Tensor]:
    """``g[group] * sign(a - b) * inv_count`` and its negation; an unneeded one is an empty tensor."""
    return launch_input_grads(_backward_kernel, TILE_ELEMENTS, grad_loss, a, b, need_a, need_b, inv_count=inv_count)


def _row_loss_shapes(a: Tensor, b: Tensor, inv_count: float) -> Tensor:
    return a.new_empty(a.shape[0], dtype=torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32))


# The launches as custom ops: a per-sample fallback for batched gradients and an opaque node for
# FakeTensor tracing (see launch.launch_directly for when they are skipped).
_row_loss = kernel_op("fastlrwa::mae_row_loss", _launch_row_loss, _row_loss_shapes)
_input_grads = kernel_op("fastlrwa::mae_input_grads", _launch_input_grads, input_grads_shapes)


def _sign_dot(a: Tensor, b: Tensor, u: Tensor, num_groups: int, dtype: torch.dtype) -> Tensor:
    """Per group ``sum(sign(a - b) * u) / group_numel``: the MAE's directional derivative."""
    summed = (torch.sign(a - b) * u).reshape(num_groups, -1).sum(1)
    return (summed * (num_groups / a.numel())).to(dtype)


class _MAE(torch.autograd.Function):
    """MAE of (rows, cols) logits per group of ``rows / num_groups`` consecutive rows."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, num_groups: int) -> Tensor:
        row_loss = _row_loss(as_rows(a), as_rows(b), num_groups / a.numel())
        return row_loss.view(num_groups, -1).sum(1).to(torch.promote_types(a.dtype, b.dtype))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        a, b, num_groups = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.num_groups = num_groups

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        grad_a, grad_b = _MAEGrad.apply(grad_loss, a, b, need_a, need_b)
        return (grad_a if need_a else None), (grad_b if need_b else None), None

    @staticmethod
    def jvp(ctx: Any, tangent_a: Tensor | None, tangent_b: Tensor | None, _: None) -> Tensor:
        a, b = ctx.saved_tensors
        direction = _difference(tangent_a, tangent_b)
        return _sign_dot(a, b, direction, ctx.num_groups, torch.promote_types(a.dtype, b.dtype))

    @staticmethod
    def vmap(info: Any, in_dims: tuple, a: Tensor, b: Tensor, num_groups: int) -> tuple:
        a, b = fold(info.batch_size, in_dims[:2], (a, b))
        return unfold(info.batch_size, _MAE.apply(a, b, num_groups * info.batch_size))


class _MAEGrad(torch.autograd.Function):
    """``(g * sign(a - b), -g * sign(a - b)) / group_numel``: linear in ``g``, constant a.e. in the logits."""

    @staticmethod
    def forward(grad_loss: Tensor, a: Tensor, b: Tensor, need_a: bool, need_b: bool) -> tuple[Tensor, Tensor]:
        inv_count = grad_loss.shape[0] / a.numel()
        return _input_grads(grad_loss, as_rows(a), as_rows(b), inv_count, need_a, need_b)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        grad_loss, a, b, need_a, need_b = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.need = (need_a, need_b)
        ctx.grad_loss_meta = (grad_loss.shape[0], grad_loss.dtype)

    @staticmethod
    def backward(ctx: Any, grad_grad_a: Tensor | None, grad_grad_b: Tensor | None) -> tuple:
        a, b = ctx.saved_tensors
        num_groups, dtype = ctx.grad_loss_meta
        need_a, need_b = ctx.need
        direction = _difference(grad_grad_a if need_a else None, grad_grad_b if need_b else None)
        if direction is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        return _sign_dot(a, b, direction, num_groups, dtype), None, None, None, None

    @staticmethod
    def jvp(ctx: Any, tangent_grad_loss: Tensor | None, *_: Any) -> tuple[Tensor, Tensor]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.need
        if tangent_grad_loss is None:
            return a.new_zeros(a.shape if need_a else (0,)), b.new_zeros(b.shape if need_b else (0,))
        return _MAEGrad.apply(tangent_grad_loss, a, b, need_a, need_b)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, grad_loss: Tensor, a: Tensor, b: Tensor, need_a: bool, need_b: bool) -> tuple:
        grad_loss, a, b = fold(info.batch_size, in_dims[:3], (grad_loss, a, b))
        grad_a, grad_b = _MAEGrad.apply(grad_loss, a, b, need_a, need_b)
        (grad_a, dim_a), (grad_b, dim_b) = unfold(info.batch_size, grad_a), unfold(info.batch_size, grad_b)
        return (grad_a, grad_b), (dim_a, dim_b)


def _difference(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    if first is None or second is None:
        return first if second is None else -second
    return first - second


def fused_mae(student_logits: Tensor, teacher_logits: Tensor, *, backend: str = "auto") -> Tensor:
    """Mean |student - teacher| over all elements (``F.l1_loss``), in one pass over the logits.

    Gradients flow to both inputs and stay differentiable (second-order use in LRWA's inner step).
    ``backend``: ``auto`` (Triton on CUDA, torch elsewhere), ``triton`` or ``torch``.
    """
    check_logit_pair("fused_mae", student_logits, teacher_logits, needs_class_dim=False)
    if not backends.use_triton(backend, student_logits):
        return mae_reference(student_logits, teacher_logits)
    cols = student_logits.shape[-1] if student_logits.dim() else 1
    rows_a, rows_b = student_logits.reshape(-1, cols), teacher_logits.reshape(-1, cols)
    return _MAE.apply(rows_a, rows_b, 1).reshape(())
