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
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fastlrwa.errors import ConfigError

from . import backend as backends
from .batching import fold, unfold
from .js_variant import JS_VARIANTS, JSVariant
from .launch import as_rows, kernel_op
from .validation import check_logit_pair

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


def _launch_row_loss(
    a: Tensor, b: Tensor, inv_temperature: float, official: bool, inv_count: float
) -> tuple[Tensor, Tensor]:
    return backends.kernel_module("_js_triton").js_row_loss(a, b, inv_temperature, official, inv_count)


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
    return backends.kernel_module("_js_triton").js_input_grads(
        grad_loss, a, b, row_stats, inv_temperature, official, inv_count, need_a, need_b
    )


def _row_loss_shapes(
    a: Tensor, b: Tensor, inv_temperature: float, official: bool, inv_count: float
) -> tuple[Tensor, Tensor]:
    acc = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return a.new_empty(a.shape[0], dtype=acc), a.new_empty((a.shape[0], ROW_STATS), dtype=acc)


def _input_grads_shapes(
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
    return a.new_empty(a.shape if need_a else (0,)), b.new_empty(b.shape if need_b else (0,))


# The launches as custom ops: a per-sample fallback for batched gradients and an opaque node for
# FakeTensor tracing (see launch.launch_directly for when they are skipped).
_row_loss = kernel_op("fastlrwa::js_row_loss", _launch_row_loss, _row_loss_shapes)
_input_grads = kernel_op("fastlrwa::js_input_grads", _launch_input_grads, _input_grads_shapes)


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
        info: Any,
        in_dims: tuple,
        grad_loss: Tensor,
        a: Tensor,
        b: Tensor,
        row_stats: Tensor,
        inv_temperature: float,
        official: bool,
        need_a: bool,
        need_b: bool,
    ) -> tuple:
        grad_loss, a, b, row_stats = fold(info.batch_size, in_dims[:4], (grad_loss, a, b, row_stats))
        grad_a, grad_b = _JSGrad.apply(grad_loss, a, b, row_stats, inv_temperature, official, need_a, need_b)
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
