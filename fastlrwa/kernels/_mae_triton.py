"""Triton kernels for the mean absolute error between two logit matrices.

Loaded once per mode by ``backend.kernel_module`` (compiled or interpreted). Inputs are
(rows, cols) with contiguous columns; sums accumulate in fp32 for fp32/bf16/fp16 inputs and in
fp64 when an input is fp64 (the precision the float64 tests check against).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .backend import kernel_module
from .launch import device_guard, row_blocks

# The shared helpers in this module's own mode (the loader's knobs scope is still active here).
_common = kernel_module("_triton_common")
accumulator_dtype, row_sum = _common.accumulator_dtype, _common.row_sum

TILE_ELEMENTS = 4096


@triton.jit
def _mae_forward_kernel(
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
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = row < rows
    row64 = row.to(tl.int64)
    total = tl.full((BLOCK_ROWS, BLOCK_COLS), 0.0, ACC)
    for start in range(0, cols, BLOCK_COLS):
        col = start + tl.arange(0, BLOCK_COLS)
        mask = row_mask[:, None] & (col < cols)[None, :]
        a = tl.load(a_ptr + row64[:, None] * stride_a + col[None, :], mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + row64[:, None] * stride_b + col[None, :], mask=mask, other=0.0).to(ACC)
        total += tl.abs(a - b)
    tl.store(row_loss_ptr + row, row_sum(total) * inv_count, mask=row_mask)


@triton.jit
def _mae_backward_kernel(
    g_ptr,
    a_ptr,
    b_ptr,
    grad_a_ptr,
    grad_b_ptr,
    rows,
    cols,
    stride_a,
    stride_b,
    rows_per_group,
    inv_count,
    WRITE_A: tl.constexpr,
    WRITE_B: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = row < rows
    row64 = row.to(tl.int64)
    scale = tl.load(g_ptr + row // rows_per_group, mask=row_mask, other=0.0).to(ACC) * inv_count
    for start in range(0, cols, BLOCK_COLS):
        col = start + tl.arange(0, BLOCK_COLS)
        mask = row_mask[:, None] & (col < cols)[None, :]
        a = tl.load(a_ptr + row64[:, None] * stride_a + col[None, :], mask=mask, other=0.0).to(ACC)
        b = tl.load(b_ptr + row64[:, None] * stride_b + col[None, :], mask=mask, other=0.0).to(ACC)
        # sign(0) = 0, as torch.sign and F.l1_loss's backward have it.
        sign = (a > b).to(ACC) - (a < b).to(ACC)
        grad = scale[:, None] * sign
        offset = row64[:, None] * cols + col[None, :]
        if WRITE_A:
            tl.store(grad_a_ptr + offset, grad.to(grad_a_ptr.dtype.element_ty), mask=mask)
        if WRITE_B:
            tl.store(grad_b_ptr + offset, (-grad).to(grad_b_ptr.dtype.element_ty), mask=mask)


def mae_row_loss(a: torch.Tensor, b: torch.Tensor, inv_count: float) -> torch.Tensor:
    """Per-row ``sum(|a - b|) * inv_count`` in the accumulator dtype, for (rows, cols) inputs."""
    rows, cols = a.shape
    acc, acc_torch = accumulator_dtype(a, b)
    row_loss = torch.empty(rows, device=a.device, dtype=acc_torch)
    blocks = row_blocks(rows, cols, a.device, TILE_ELEMENTS)
    with device_guard(a):
        _mae_forward_kernel[blocks.grid](
            a,
            b,
            row_loss,
            rows,
            cols,
            a.stride(0),
            b.stride(0),
            inv_count,
            ACC=acc,
            BLOCK_ROWS=blocks.block_rows,
            BLOCK_COLS=blocks.block_cols,
            num_warps=blocks.num_warps,
        )
    return row_loss


def mae_input_grads(
    g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, inv_count: float, need_a: bool, need_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``g[group] * sign(a - b) * inv_count`` and its negation; an unneeded one is an empty tensor."""
    rows, cols = a.shape
    grad_a = torch.empty((rows, cols) if need_a else (0,), device=a.device, dtype=a.dtype)
    grad_b = torch.empty((rows, cols) if need_b else (0,), device=b.device, dtype=b.dtype)
    if need_a or need_b:
        blocks = row_blocks(rows, cols, a.device, TILE_ELEMENTS)
        with device_guard(a):
            _mae_backward_kernel[blocks.grid](
                g,
                a,
                b,
                grad_a,
                grad_b,
                rows,
                cols,
                a.stride(0),
                b.stride(0),
                rows // g.shape[0],
                inv_count,
                WRITE_A=need_a,
                WRITE_B=need_b,
                ACC=accumulator_dtype(a, b)[0],
                BLOCK_ROWS=blocks.block_rows,
                BLOCK_COLS=blocks.block_cols,
                num_warps=blocks.num_warps,
            )
    return grad_a, grad_b
