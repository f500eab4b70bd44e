"""Triton kernels for the Jensen-Shannon divergence between two logit matrices, both variants.

Loaded once per mode by ``backend.kernel_module`` (compiled or interpreted). Per row the forward
computes both log-softmaxes (online over column chunks when a row does not fit one tile), the
loss term and, for the backward, the row statistics: max and log-sum-exp about the max of each
input, ``sum(P * dL/dP)`` and ``sum(Q * dL/dQ)``. With those the backward is a single pass,
``dL/da = g / T * P * (dL/dP - sum(P * dL/dP))``, the softmax Jacobian applied row-wise.
Log-probabilities are formed as ``(x - max) - log_sum`` rather than ``x - lse``: with logits of
magnitude 20-30 the rounding of ``lse`` would shift every log-probability of the row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import js
from .backend import kernel_module
from .launch import device_guard, row_blocks

# The shared helpers in this module's own mode (the loader's knobs scope is still active here).
_common = kernel_module("_triton_common")
accumulator_dtype, row_max, row_sum = _common.accumulator_dtype, _common.row_max, _common.row_sum

TILE_ELEMENTS = 2048

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)
CLAMP_LOW: tl.constexpr = tl.constexpr(js.CLAMP_LOW)
CLAMP_HIGH: tl.constexpr = tl.constexpr(js.CLAMP_HIGH)
# A finite stand-in for -inf in masked columns: keeps rows past the end free of inf - inf.
MASKED: tl.constexpr = tl.constexpr(-1.0e30)
# Per row: max_a, log_sum_a, max_b, log_sum_b, sum(P * dL/dP), sum(Q * dL/dQ).
ROW_STATS: tl.constexpr = tl.constexpr(js.ROW_STATS)


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _clamp_bounds(x):
    # Bounds in x's own precision: a bare float literal would be fp32 and move fp64 results.
    return tl.full((), CLAMP_LOW, x.dtype), tl.full((), CLAMP_HIGH, x.dtype)


@triton.jit
def _clamp_probability(x):
    low, high = _clamp_bounds(x)
    return tl.minimum(tl.maximum(x, low), high)


@triton.jit
def _inside_clamp(x):
    # torch.clamp passes gradient strictly inside (min, max); at either bound it is 0.
    low, high = _clamp_bounds(x)
    return (x > low) & (x < high)


@triton.jit
def _js_terms(log_p, log_q, OFFICIAL: tl.constexpr):
    """Per element: the loss term, P, dL/dP, Q, dL/dQ (before the row reduction's scale)."""
    p = tl.exp(log_p)
    q = tl.exp(log_q)
    if OFFICIAL:
        # Authors' form: M from the unclamped P, Q; P, Q, M clamped; mean(Mc * (log Mc - log Pc))
        # and the same with Qc, each weighted 0.5. Gradient reaches P and Q directly and through M.
        m = 0.5 * (p + q)
        p_c = _clamp_probability(p)
        q_c = _clamp_probability(q)
        m_c = _clamp_probability(m)
        log_m_c = tl.log(m_c)
        mean_log_pq = 0.5 * (tl.log(p_c) + tl.log(q_c))
        term = m_c * (log_m_c - mean_log_pq)
        through_m = tl.where(_inside_clamp(m), 0.5 * (log_m_c + 1.0 - mean_log_pq), 0.0)
        w_a = tl.where(_inside_clamp(p), -0.5 * m_c / p_c, 0.0) + through_m
        w_b = tl.where(_inside_clamp(q), -0.5 * m_c / q_c, 0.0) + through_m
    else:
        # 0.5 * (log P - log M) with log M = log((P + Q) / 2), written through delta = log Q - log P
        # so that no log(0) appears: log P - log M = log 2 - softplus(delta).
        delta = log_q - log_p
        w_a = 0.5 * (LN2 - _softplus(delta))
        w_b = w_a + 0.5 * delta
        term = p * w_a + q * w_b
    return term, p, w_a, q, w_b


@triton.jit
def _load_scaled(ptr, row64, col, mask, stride, inv_temperature, ACC: tl.constexpr):
    x = tl.load(ptr + row64[:, None] * stride + col[None, :], mask=mask, other=0.0).to(ACC)
    return tl.where(mask, x * inv_temperature, MASKED)


@triton.jit
def _log_softmax(x, top, log_total):
    return (x - top[:, None]) - log_total[:, None]


@triton.jit
def _row_sums(x_a, x_b, top_a, log_total_a, top_b, log_total_b, mask, OFFICIAL: tl.constexpr):
    log_p = _log_softmax(x_a, top_a, log_total_a)
    log_q = _log_softmax(x_b, top_b, log_total_b)
    term, p, w_a, q, w_b = _js_terms(log_p, log_q, OFFICIAL)
    loss = row_sum(tl.where(mask, term, 0.0))
    dot_a = row_sum(tl.where(mask, p * w_a, 0.0))
    dot_b = row_sum(tl.where(mask, q * w_b, 0.0))
    return loss, dot_a, dot_b


@triton.jit
def _max_and_log_sum(x):
    top = row_max(x)
    return top, tl.log(row_sum(tl.exp(x - top[:, None])))


@triton.jit
def _online_logsumexp(top, total, x):
    new_top = tl.maximum(top, row_max(x))
    total = total * tl.exp(top - new_top) + row_sum(tl.exp(x - new_top[:, None]))
    return new_top, total


@triton.jit
def _js_forward_kernel(
    a_ptr,
    b_ptr,
    row_loss_ptr,
    stats_ptr,
    rows,
    cols,
    stride_a,
    stride_b,
    inv_temperature,
    inv_count,
    OFFICIAL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
    SINGLE_CHUNK: tl.constexpr,
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = row < rows
    row64 = row.to(tl.int64)
    if SINGLE_CHUNK:
        # The whole row is one tile: read the logits once.
        col = tl.arange(0, BLOCK_COLS)
        mask = row_mask[:, None] & (col < cols)[None, :]
        x_a = _load_scaled(a_ptr, row64, col, mask, stride_a, inv_temperature, ACC)
        x_b = _load_scaled(b_ptr, row64, col, mask, stride_b, inv_temperature, ACC)
        top_a, log_total_a = _max_and_log_sum(x_a)
        top_b, log_total_b = _max_and_log_sum(x_b)
        loss, dot_a, dot_b = _row_sums(x_a, x_b, top_a, log_total_a, top_b, log_total_b, mask, OFFICIAL)
    else:
        top_a = tl.full((BLOCK_ROWS,), MASKED, ACC)
        top_b = tl.full((BLOCK_ROWS,), MASKED, ACC)
        total_a = tl.full((BLOCK_ROWS,), 0.0, ACC)
        total_b = tl.full((BLOCK_ROWS,), 0.0, ACC)
        for start in range(0, cols, BLOCK_COLS):
            col = start + tl.arange(0, BLOCK_COLS)
            mask = row_mask[:, None] & (col < cols)[None, :]
            x_a = _load_scaled(a_ptr, row64, col, mask, stride_a, inv_temperature, ACC)
            x_b = _load_scaled(b_ptr, row64, col, mask, stride_b, inv_temperature, ACC)
            top_a, total_a = _online_logsumexp(top_a, total_a, x_a)
            top_b, total_b = _online_logsumexp(top_b, total_b, x_b)
        log_total_a = tl.log(total_a)
        log_total_b = tl.log(total_b)
        loss = tl.full((BLOCK_ROWS,), 0.0, ACC)
        dot_a = tl.full((BLOCK_ROWS,), 0.0, ACC)
        dot_b = tl.full((BLOCK_ROWS,), 0.0, ACC)
        for start in range(0, cols, BLOCK_COLS):
            col = start + tl.arange(0, BLOCK_COLS)
            mask = row_mask[:, None] & (col < cols)[None, :]
            x_a = _load_scaled(a_ptr, row64, col, mask, stride_a, inv_temperature, ACC)
            x_b = _load_scaled(b_ptr, row64, col, mask, stride_b, inv_temperature, ACC)
            chunk_loss, chunk_dot_a, chunk_dot_b = _row_sums(
                x_a, x_b, top_a, log_total_a, top_b, log_total_b, mask, OFFICIAL
            )
            loss += chunk_loss
            dot_a += chunk_dot_a
            dot_b += chunk_dot_b
    tl.store(row_loss_ptr + row, loss * inv_count, mask=row_mask)
    stats = stats_ptr + row64 * ROW_STATS
    tl.store(stats, top_a, mask=row_mask)
    tl.store(stats + 1, log_total_a, mask=row_mask)
    tl.store(stats + 2, top_b, mask=row_mask)
    tl.store(stats + 3, log_total_b, mask=row_mask)
    tl.store(stats + 4, dot_a, mask=row_mask)
    tl.store(stats + 5, dot_b, mask=row_mask)


@triton.jit
def _js_backward_kernel(
    g_ptr,
    a_ptr,
    b_ptr,
    stats_ptr,
    grad_a_ptr,
    grad_b_ptr,
    rows,
    cols,
    stride_a,
    stride_b,
    rows_per_group,
    inv_temperature,
    inv_count,
    OFFICIAL: tl.constexpr,
    WRITE_A: tl.constexpr,
    WRITE_B: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = row < rows
    row64 = row.to(tl.int64)
    scale = tl.load(g_ptr + row // rows_per_group, mask=row_mask, other=0.0).to(ACC) * (inv_count * inv_temperature)
    stats = stats_ptr + row64 * ROW_STATS
    top_a = tl.load(stats, mask=row_mask, other=0.0)
    log_total_a = tl.load(stats + 1, mask=row_mask, other=0.0)
    top_b = tl.load(stats + 2, mask=row_mask, other=0.0)
    log_total_b = tl.load(stats + 3, mask=row_mask, other=0.0)
    dot_a = tl.load(stats + 4, mask=row_mask, other=0.0)
    dot_b = tl.load(stats + 5, mask=row_mask, other=0.0)
    for start in range(0, cols, BLOCK_COLS):
        col = start + tl.arange(0, BLOCK_COLS)
        mask = row_mask[:, None] & (col < cols)[None, :]
        x_a = _load_scaled(a_ptr, row64, col, mask, stride_a, inv_temperature, ACC)
        x_b = _load_scaled(b_ptr, row64, col, mask, stride_b, inv_temperature, ACC)
        log_p = _log_softmax(x_a, top_a, log_total_a)
        log_q = _log_softmax(x_b, top_b, log_total_b)
        _, p, w_a, q, w_b = _js_terms(log_p, log_q, OFFICIAL)
        offset = row64[:, None] * cols + col[None, :]
        if WRITE_A:
            grad_a = scale[:, None] * p * (w_a - dot_a[:, None])
            tl.store(grad_a_ptr + offset, grad_a.to(grad_a_ptr.dtype.element_ty), mask=mask)
        if WRITE_B:
            grad_b = scale[:, None] * q * (w_b - dot_b[:, None])
            tl.store(grad_b_ptr + offset, grad_b.to(grad_b_ptr.dtype.element_ty), mask=mask)


def js_row_loss(
    a: torch.Tensor, b: torch.Tensor, inv_temperature: float, official: bool, inv_count: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss times ``inv_count``, and the (rows, 6) statistics the backward needs."""
    rows, cols = a.shape
    acc, acc_torch = accumulator_dtype(a, b)
    row_loss = torch.empty(rows, device=a.device, dtype=acc_torch)
    row_stats = torch.empty((rows, ROW_STATS.value), device=a.device, dtype=acc_torch)
    blocks = row_blocks(rows, cols, a.device, TILE_ELEMENTS)
    with device_guard(a):
        _js_forward_kernel[blocks.grid](
            a,
            b,
            row_loss,
            row_stats,
            rows,
            cols,
            a.stride(0),
            b.stride(0),
            inv_temperature,
            inv_count,
            OFFICIAL=official,
            ACC=acc,
            BLOCK_ROWS=blocks.block_rows,
            BLOCK_COLS=blocks.block_cols,
            SINGLE_CHUNK=blocks.num_chunks == 1,
            num_warps=blocks.num_warps,
        )
    return row_loss, row_stats


def js_input_grads(
    g: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    row_stats: torch.Tensor,
    inv_temperature: float,
    official: bool,
    inv_count: float,
    need_a: bool,
    need_b: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``g[group] * loss`` w.r.t. both logits; an unneeded one is an empty tensor."""
    rows, cols = a.shape
    grad_a = torch.empty((rows, cols) if need_a else (0,), device=a.device, dtype=a.dtype)
    grad_b = torch.empty((rows, cols) if need_b else (0,), device=b.device, dtype=b.dtype)
    if need_a or need_b:
        blocks = row_blocks(rows, cols, a.device, TILE_ELEMENTS)
        with device_guard(a):
            _js_backward_kernel[blocks.grid](
                g,
                a,
                b,
                row_stats,
                grad_a,
                grad_b,
                rows,
                cols,
                a.stride(0),
                b.stride(0),
                rows // g.shape[0],
                inv_temperature,
                inv_count,
                OFFICIAL=official,
                WRITE_A=need_a,
                WRITE_B=need_b,
                ACC=accumulator_dtype(a, b)[0],
                BLOCK_ROWS=blocks.block_rows,
                BLOCK_COLS=blocks.block_cols,
                num_warps=blocks.num_warps,
            )
    return grad_a, grad_b
