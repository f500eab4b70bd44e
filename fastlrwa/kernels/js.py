"""Jensen-Shannon divergence between two sets of logits, the generator's disagreement term.

Two variants (``JSVariant``; the paper's eq. 10 and the authors' code):

``paper``    mean over rows of ``0.5 * KL(P || M) + 0.5 * KL(Q || M)``, ``M = (P + Q) / 2``,
             P, Q the softmaxes at ``temperature``; natural log, no clamping, computed from
             log-softmaxes so that no log(0) occurs.
``official`` the authors' code: ``M = (P + Q) / 2`` from the unclamped softmaxes, then P, Q, M
             each clamped to [0.01, 0.99] and
             ``0.5 * KLDivLoss(log Pc, Mc) + 0.5 * KLDivLoss(log Qc, Mc)`` with KLDivLoss's default
             element mean over all N * C entries, ``KLDivLoss(log X, M) = mean(M * (log M - log X))``.
             Gradient flows exactly as PyTorch autograd of that code has it: into P and Q through
             ``log Pc``/``log Qc`` and through the target ``Mc`` (PyTorch differentiates a KLDivLoss
             target too), each clamp passing gradient only strictly inside (0.01, 0.99).

The caller applies the generator objective ``1 - clamp(JS, 0, 1)``. Both inputs get gradients
(the teacher's logits carry gradient to the generator) and tangents (``torch.func.jvp``: the
backward kernel's gradient dotted with the tangent). Second derivatives, reverse or forward over
reverse, are available only with the torch backend: the generator step never needs them. Under
torch.compile the loss is the torch expression (see ``backend.use_triton``).

In this file, top to bottom: the torch reference, the Triton kernels and their launches, the custom ops, and
the autograd Functions with their jvp and vmap rules. Per row the forward kernel computes both
log-softmaxes (online over column chunks when a row does not fit one tile), the loss term and, for the
backward, the row statistics: max and log-sum-exp about the max of each input, ``sum(P * dL/dP)`` and
``sum(Q * dL/dQ)``. With those the backward is a single pass, ``dL/da = g / T * P * (dL/dP - sum(P * dL/dP))``,
the softmax Jacobian applied row-wise. Log-probabilities are formed as ``(x - max) - log_sum`` rather than
``x - lse``: with logits of magnitude 20-30 the rounding of ``lse`` would shift every log-probability of the row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fastlrwa.errors import ConfigError

from . import backend as backends
from .batching import fold, unfold
from .js_variant import JS_VARIANTS, JSVariant
from .launch import as_rows, input_grads_shapes, kernel_op, row_blocks
from .triton_jit import column_chunk, jit, launch_input_grads, launch_rows, load_tile, row_block, row_max, row_sum
from .validation import check_logit_pair

if TYPE_CHECKING:  # bound in the kernels' scope when they are first launched (triton_jit)
    import triton.language as tl

CLAMP_LOW, CLAMP_HIGH = 0.01, 0.99
# Per row, saved for the backward: max and log-sum-exp of each input, sum(P dL/dP), sum(Q dL/dQ).
ROW_STATS = 6


def js_reference(
    a_logits: Tensor, b_logits: Tensor, *, temperature: float = 1.0, variant: JSVariant = "paper"
) -> Tensor:
    """The torch reference for both variants; class dim last, computed in at least fp32."""
    result_dtype = torch.promote_types(a_logits.dtype, b_logits.dtype)
    compute_dtype = torch.promote_types(result_dtype, torch.float32)
    log_p = F.log_softmax(a_logits.to(compute_dtype) / temperature, dim=-1)
    log_q = F.log_softmax(b_logits.to(compute_dtype) / temperature, dim=-1)
    # The factors 0.5 multiply whole tensors, never a 0-dim result: forward-mode AD of a Python
    # scalar times a 0-dim tensor returns a float64 tangent (torch 2.14).
    if variant == "paper":
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
        terms = 0.5 * (log_p.exp() * (log_p - log_m) + log_q.exp() * (log_q - log_m))
        loss = terms.sum(-1).mean()
    else:
        p, q = log_p.exp(), log_q.exp()
        m = torch.clamp(0.5 * (p + q), CLAMP_LOW, CLAMP_HIGH)
        p, q = torch.clamp(p, CLAMP_LOW, CLAMP_HIGH), torch.clamp(q, CLAMP_LOW, CLAMP_HIGH)
        # 0.5 * F.kl_div(log P, M) + 0.5 * F.kl_div(log Q, M), reduction "mean", in one mean
        # (same value and gradient, no warning).
        loss = (m * (m.log() - 0.5 * (p.log() + q.log()))).mean()
    return loss.to(result_dtype)


TILE_ELEMENTS = 2048
LN2 = 0.6931471805599453
# A finite stand-in for -inf in masked columns: keeps rows past the end free of inf - inf.
MASKED = -1.0e30


@jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@jit
def _clamp_bounds(x):
    # Bounds in x's own precision: a bare float literal would be fp32 and move fp64 results.
    return tl.full((), CLAMP_LOW, x.dtype), tl.full((), CLAMP_HIGH, x.dtype)


@jit
def _clamp_probability(x):
    low, high = _clamp_bounds(x)
    return tl.minimum(tl.maximum(x, low), high)


@jit
def _inside_clamp(x):
    # torch.clamp passes gradient strictly inside (min, max); at either bound it is 0.
    low, high = _clamp_bounds(x)
    return (x > low) & (x < high)


@jit
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


@jit
def _scaled_tiles(a_ptr, b_ptr, row64, col, mask, stride_a, stride_b, inv_temperature, ACC: tl.constexpr):
    """Both inputs' tiles divided by the temperature, masked columns at ``MASKED``."""
    x_a = load_tile(a_ptr, row64, col, mask, stride_a, ACC)
    x_b = load_tile(b_ptr, row64, col, mask, stride_b, ACC)
    return tl.where(mask, x_a * inv_temperature, MASKED), tl.where(mask, x_b * inv_temperature, MASKED)


@jit
def _log_softmax(x, top, log_total):
    return (x - top[:, None]) - log_total[:, None]


@jit
def _row_sums(x_a, x_b, top_a, log_total_a, top_b, log_total_b, mask, OFFICIAL: tl.constexpr):
    log_p = _log_softmax(x_a, top_a, log_total_a)
    log_q = _log_softmax(x_b, top_b, log_total_b)
    term, p, w_a, q, w_b = _js_terms(log_p, log_q, OFFICIAL)
    loss = row_sum(tl.where(mask, term, 0.0))
    dot_a = row_sum(tl.where(mask, p * w_a, 0.0))
    dot_b = row_sum(tl.where(mask, q * w_b, 0.0))
    return loss, dot_a, dot_b


@jit
def _max_and_log_sum(x):
    top = row_max(x)
    return top, tl.log(row_sum(tl.exp(x - top[:, None])))


@jit
def _online_logsumexp(top, total, x):
    new_top = tl.maximum(top, row_max(x))
    total = total * tl.exp(top - new_top) + row_sum(tl.exp(x - new_top[:, None]))
    return new_top, total


@jit
def _forward_kernel(
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
    SINGLE_CHUNK: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    row, row_mask, row64 = row_block(rows, BLOCK_ROWS)
    if SINGLE_CHUNK:
        # The whole row is one tile: read the logits once.
        col, mask = column_chunk(0, row_mask, cols, BLOCK_COLS)
        x_a, x_b = _scaled_tiles(a_ptr, b_ptr, row64, col, mask, stride_a, stride_b, inv_temperature, ACC)
        top_a, log_total_a = _max_and_log_sum(x_a)
        top_b, log_total_b = _max_and_log_sum(x_b)
        loss, dot_a, dot_b = _row_sums(x_a, x_b, top_a, log_total_a, top_b, log_total_b, mask, OFFICIAL)
    else:
        top_a = tl.full((BLOCK_ROWS,), MASKED, ACC)
        top_b = tl.full((BLOCK_ROWS,), MASKED, ACC)
        total_a = tl.full((BLOCK_ROWS,), 0.0, ACC)
        total_b = tl.full((BLOCK_ROWS,), 0.0, ACC)
        for start in range(0, cols, BLOCK_COLS):
            col, mask = column_chunk(start, row_mask, cols, BLOCK_COLS)
            x_a, x_b = _scaled_tiles(a_ptr, b_ptr, row64, col, mask, stride_a, stride_b, inv_temperature, ACC)
            top_a, total_a = _online_logsumexp(top_a, total_a, x_a)
            top_b, total_b = _online_logsumexp(top_b, total_b, x_b)
        log_total_a = tl.log(total_a)
        log_total_b = tl.log(total_b)
        loss = tl.full((BLOCK_ROWS,), 0.0, ACC)
        dot_a = tl.full((BLOCK_ROWS,), 0.0, ACC)
        dot_b = tl.full((BLOCK_ROWS,), 0.0, ACC)
        for start in range(0, cols, BLOCK_COLS):
            col, mask = column_chunk(start, row_mask, cols, BLOCK_COLS)
            x_a, x_b = _scaled_tiles(a_ptr, b_ptr, row64, col, mask, stride_a, stride_b, inv_temperature, ACC)
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


@jit
def _backward_kernel(
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
    row, row_mask, row64 = row_block(rows, BLOCK_ROWS)
    scale = tl.load(g_ptr + row // rows_per_group, mask=row_mask, other=0.0).to(ACC) * (inv_count * inv_temperature)
    stats = stats_ptr + row64 * ROW_STATS
    top_a = tl.load(stats, mask=row_mask, other=0.0)
    log_total_a = tl.load(stats + 1, mask=row_mask, other=0.0)
    top_b = tl.load(stats + 2, mask=row_mask, other=0.0)
    log_total_b = tl.load(stats + 3, mask=row_mask, other=0.0)
    dot_a = tl.load(stats + 4, mask=row_mask, other=0.0)
    dot_b = tl.load(stats + 5, mask=row_mask, other=0.0)
    for start in range(0, cols, BLOCK_COLS):
        col, mask = column_chunk(start, row_mask, cols, BLOCK_COLS)
        x_a, x_b = _scaled_tiles(a_ptr, b_ptr, row64, col, mask, stride_a, stride_b, inv_temperature, ACC)
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


def _launch_row_loss(
    a: Tensor, b: Tensor, inv_temperature: float, official: bool, inv_count: float
) -> tuple[Tensor, Tensor]:
    """Per-row loss times ``inv_count``, and the (rows, 6) statistics the backward needs."""
    row_loss, row_stats = _row_loss_shapes(a, b, inv_temperature, official, inv_count)
    blocks = row_blocks(*a.shape, a.device, TILE_ELEMENTS)
    launch_rows(
        _forward_kernel,
        blocks,
        a,
        b,
        row_loss_ptr=row_loss,
        stats_ptr=row_stats,
        inv_temperature=inv_temperature,
        inv_count=inv_count,
        OFFICIAL=official,
        SINGLE_CHUNK=blocks.num_chunks == 1,
    )
    return row_loss, row_stats


def _launch_input_grads(
    grad_loss: Tensor,
    a: Tensor,
    b: Tensor,
    row_stats: Tensor,
    inv_temperature: float,
    official: bool,
    inv_count: float,
    need_a: bool,
    need_b: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of ``g[group] * loss`` w.r.t. both logits; an unneeded one is an empty tensor."""
    return launch_input_grads(
        _backward_kernel,
        TILE_ELEMENTS,
        grad_loss,
        a,
        b,
        need_a,
        need_b,
        stats_ptr=row_stats,
        inv_temperature=inv_temperature,
        inv_count=inv_count,
        OFFICIAL=official,
    )


def _row_loss_shapes(
    a: Tensor, b: Tensor, inv_temperature: float, official: bool, inv_count: float
) -> tuple[Tensor, Tensor]:
    acc = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return a.new_empty(a.shape[0], dtype=acc), a.new_empty((a.shape[0], ROW_STATS), dtype=acc)


# The launches as custom ops: a per-sample fallback for batched gradients and an opaque node for
# FakeTensor tracing (see launch.launch_directly for when they are skipped).
_row_loss = kernel_op("fastlrwa::js_row_loss", _launch_row_loss, _row_loss_shapes)
_input_grads = kernel_op("fastlrwa::js_input_grads", _launch_input_grads, input_grads_shapes)


def _inv_count(rows: int, cols: int, num_groups: int, official: bool) -> float:
    """Per-group normaliser: rows for the paper's batch mean, rows * cols for KLDivLoss's mean."""
    rows_per_group = rows // num_groups
    return 1.0 / (rows_per_group * cols if official else rows_per_group)


class _JS(torch.autograd.Function):
    """JS divergence of (rows, cols) logits per group of consecutive rows, plus row statistics."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, num_groups: int, inv_temperature: float, official: bool) -> tuple[Tensor, Tensor]:
        inv_count = _inv_count(a.shape[0], a.shape[1], num_groups, official)
        row_loss, row_stats = _row_loss(as_rows(a), as_rows(b), inv_temperature, official, inv_count)
        return row_loss.view(num_groups, -1).sum(1).to(torch.promote_types(a.dtype, b.dtype)), row_stats

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        a, b, num_groups, inv_temperature, official = inputs
        ctx.save_for_backward(a, b, output[1])
        ctx.save_for_forward(a, b, output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.options = (inv_temperature, official)
        ctx.loss_meta = (num_groups, output[0].dtype)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _: Tensor | None) -> tuple:
        a, b, row_stats = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        grad_a, grad_b = _JSGrad.apply(grad_loss, a, b, row_stats, *ctx.options, need_a, need_b)
        return (grad_a if need_a else None), (grad_b if need_b else None), None, None, None

    @staticmethod
    def jvp(ctx: Any, tangent_a: Tensor | None, tangent_b: Tensor | None, *_: None) -> tuple[Tensor, None]:
        """Per group, the gradient of the group's loss dotted with the tangents, accumulated in >= fp32."""
        a, b, row_stats = ctx.saved_tensors
        num_groups, dtype = ctx.loss_meta
        ones = row_stats.new_ones(num_groups)
        grads = _JSGrad.apply(ones, a, b, row_stats, *ctx.options, tangent_a is not None, tangent_b is not None)
        tangent = row_stats.new_zeros(num_groups)
        for grad, direction in zip(grads, (tangent_a, tangent_b)):
            if direction is not None:
                tangent = tangent + (grad.to(row_stats.dtype) * direction).reshape(num_groups, -1).sum(1)
        return tangent.to(dtype), None

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple, a: Tensor, b: Tensor, num_groups: int, inv_temperature: float, official: bool
    ) -> tuple:
        a, b = fold(info.batch_size, in_dims[:2], (a, b))
        loss, row_stats = _JS.apply(a, b, num_groups * info.batch_size, inv_temperature, official)
        (loss, loss_dim), (row_stats, stats_dim) = unfold(info.batch_size, loss), unfold(info.batch_size, row_stats)
        return (loss, row_stats), (loss_dim, stats_dim)


class _JSGrad(torch.autograd.Function):
    """Gradients of ``g[group] * JS`` w.r.t. both logits, in one pass with the saved row statistics."""

    @staticmethod
    def forward(
        grad_loss: Tensor,
        a: Tensor,
        b: Tensor,
        row_stats: Tensor,
        inv_temperature: float,
        official: bool,
        need_a: bool,
        need_b: bool,
    ) -> tuple[Tensor, Tensor]:
        inv_count = _inv_count(a.shape[0], a.shape[1], grad_loss.shape[0], official)
        return _input_grads(
            grad_loss, as_rows(a), as_rows(b), row_stats, inv_temperature, official, inv_count, need_a, need_b
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        """Nothing to save: the derivatives only refuse."""

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple:
        _refuse_second_derivative()

    @staticmethod
    def jvp(ctx: Any, *tangents: Tensor | None) -> tuple:
        _refuse_second_derivative()

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple, grad_loss: Tensor, a: Tensor, b: Tensor, row_stats: Tensor, *options: Any
    ) -> tuple:
        grad_loss, a, b, row_stats = fold(info.batch_size, in_dims[:4], (grad_loss, a, b, row_stats))
        grad_a, grad_b = _JSGrad.apply(grad_loss, a, b, row_stats, *options)
        (grad_a, dim_a), (grad_b, dim_b) = unfold(info.batch_size, grad_a), unfold(info.batch_size, grad_b)
        return (grad_a, grad_b), (dim_a, dim_b)


def _refuse_second_derivative() -> None:
    raise ConfigError(
        "fused_js(backend='triton') has no second derivative; use backend='torch' where the JS "
        "divergence is differentiated twice"
    )


def fused_js(
    a_logits: Tensor, b_logits: Tensor, *, temperature: float = 1.0, variant: JSVariant = "paper", backend: str = "auto"
) -> Tensor:
    """Jensen-Shannon divergence between the softmaxes of two logit tensors (class dim last).

    ``variant``: ``paper`` (batch mean of the divergence) or ``official`` (the authors' clamped
    KLDivLoss form), see the module docstring. ``backend``: ``auto`` (Triton on CUDA, torch
    elsewhere), ``triton`` or ``torch``. Gradients flow to both inputs.
    """
    check_logit_pair("fused_js", a_logits, b_logits, needs_class_dim=True)
    if variant not in JS_VARIANTS:
        raise ConfigError(f"fused_js: unknown variant {variant!r}; use one of: {', '.join(JS_VARIANTS)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ConfigError(f"fused_js: temperature must be a positive finite number, got {temperature!r}")
    if not backends.use_triton(backend, a_logits):
        return js_reference(a_logits, b_logits, temperature=temperature, variant=variant)
    cols = a_logits.shape[-1]
    rows_a, rows_b = a_logits.reshape(-1, cols), b_logits.reshape(-1, cols)
    loss, _ = _JS.apply(rows_a, rows_b, 1, 1.0 / temperature, variant == "official")
    return loss.reshape(())
