"""The LRWA student update (Patel et al., CVPR 2023, eq. 6) computed without ``higher``.

With the inner step θ' = θ − α(∇L_Acq(θ) + λθ) and v = ∇L_Ret(θ'), the gradient of both
objectives is

    paper:    ∇L_Acq(θ) + (1 − αλ) v − α H_Acq(θ) v
    official: ∇L_cat(θ) + (1 − αλ) v − α H_Acq(θ) v

where L_cat is the MAE over one forward on cat(x_new, x_mem) at θ (the authors' code; with
BatchNorm in train mode it is not L_Acq + L_Ret). Written this way the update needs one forward/
backward on x_new (the inner step, whose gradient is reused for the outer L_Acq term), one on
x_mem at θ', and one Hessian-vector product; the teacher is never run (memory samples carry
their teacher logits). The authors' code re-runs the student on cat(x_new, x_mem) and the teacher
on x_mem and differentiates through the whole unrolled step.

Hessian-vector product (``hvp``):
  * ``"exact"``: ``exact_method="reverse"`` (default): reverse-over-reverse. The inner gradient is
    taken with its graph kept (``create_graph``) and, once v is known, differentiated again along
    v: no second forward on x_new, one backward through the inner step's backward. Eager, this is
    plain ``torch.autograd``; ``torch.func``'s nested ``grad`` computes the same but keeps two
    (small size) to four (paper size) times the live tensors, and is what runs under
    torch.compile, where Dynamo traces ``torch.func`` but (on the torch versions supported) not
    ``torch.autograd.grad``, and Inductor plans the memory. ``exact_method="forward"``:
    forward-over-reverse, ``torch.func.jvp`` of the gradient once v is known: a second forward
    and backward on x_new in dual numbers, 1.2-1.3x the FLOPs and, at paper size, 1.6x the live
    tensors of ``reverse``. The default is the method with fewer FLOPs and fewer live tensors at
    paper size for each objective (``reverse`` for both; the counts and the rule: BENCHMARKS.md).
  * ``"fd"``: a one-sided difference of gradients (as DARTS), (∇L_Acq(θ + εv) − ∇L_Acq(θ)) / ε,
    reusing ∇L_Acq(θ), with the MAE's subgradient with respect to the logits held at its value at
    θ (see :func:`_hvp_finite_difference`) and ε = sqrt(eps_dtype) (1 + ‖θ‖) / ‖v‖: a perturbation
    of sqrt(eps) relative to the weights, which balances the O(ε) truncation error against the
    O(eps/ε) rounding error. Accuracy depends on the network: with smooth activations the update
    is within 1e-2 of the exact one in float32; ReLU networks are piecewise linear too, every
    activation that changes sign between θ and θ + εv adds a jump the exact (almost-everywhere)
    Hessian does not have, and in float32 no ε makes those negligible — the fd update then
    differs from the exact one by O(1) (measured figures in BENCHMARKS.md). fd is the cheap
    second-order mode, not a stand-in for ``exact`` on ReLU students.
  * ``"first_order"``: the Hessian term dropped, dθ'/dθ = (1 − αλ) I.

BatchNorm in train mode: every forward normalises with its own batch statistics. Running
statistics: ``official`` updates them from the cat(x_new, x_mem) forward at θ alone, as the
authors' code does (its inner and retention forwards run through ``higher``'s patched copy of the
student, which keeps buffers of its own: tests/test_released_update.py), so
``num_batches_tracked`` grows by 1 per call; ``paper`` (no authors' code to follow) updates them from
x_new at θ (inner step), then x_mem at θ' (retention), growing by 2. The extra forwards (the
``forward`` HVP, the finite difference, the alignment probe) update nothing.

Alignment (section 3.4): with ``align=True`` the update also runs one forward/backward on the small
x_mem batch at θ (no running-statistics update) and returns ``aux["grad_cos"]`` =
cos(∇L_Acq(θ), ∇L_Ret(θ)), the quantity of section 3.4. The trainer asks for it on every
``align_every``-th step (``LRWAOptions``); what the update returns is what is logged, nothing more.

Precision: the inner step and the Hessian-vector product run in float32 (no autocast); the
retention gradient, the official cat forward and the alignment probe run under autocast in
``amp_dtype``. See ``fastlrwa.updates.amp`` for ``loss_scale`` (fp16).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from torch import Tensor, nn
from torch.func import grad, grad_and_value, jvp, vjp

from fastlrwa.losses import distill
from fastlrwa.updates.amp import Precision, scaled_grad
from fastlrwa.updates.functional import (
    BufferDict,
    TensorDict,
    detached,
    distill_loss,
    distill_loss_and_logits,
    frozen_running_stats,
    sgd_step,
    student_logits,
    tree_axpy,
    tree_cosine,
    tree_dot,
    tree_norm,
)
from fastlrwa.updates.options import LRWAOptions


def _retention(
    model: nn.Module,
    params: TensorDict,
    buffers: BufferDict,
    g_acq: TensorDict,
    x_mem: Tensor,
    t_mem: Tensor,
    alpha: float,
    weight_decay: float,
    precision: Precision,
) -> tuple[TensorDict, Tensor]:
    """v = ∇L_Ret(θ') (scaled by the loss scale) and L_Ret(θ'), θ' held constant."""
    theta_prime = sgd_step(params, g_acq, alpha, weight_decay)
    v, loss_ret = scaled_grad(partial(distill_loss, model), precision)(theta_prime, buffers, x_mem, t_mem)
    return v, loss_ret


def _exact_reverse(model, params, buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision):
    """Inner step, retention gradient and H_Acq v by reverse-over-reverse, reusing the inner forward.

    ∇L_Acq(θ) keeps its graph, v is computed from its value, and the graph is differentiated along v.
    """
    if torch.compiler.is_compiling():
        return _exact_reverse_traceable(
            model, params, buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision
        )
    names = list(params)
    theta = [params[name].detach().requires_grad_() for name in names]
    with torch.enable_grad(), precision.full_precision():
        loss_acq = distill_loss(model, dict(zip(names, theta)), buffers, x_new, t_new)
        g = torch.autograd.grad(loss_acq, theta, create_graph=True)
    g_acq = {name: tensor.detach() for name, tensor in zip(names, g)}
    v, loss_ret = _retention(model, params, buffers, g_acq, x_mem, t_mem, alpha, weight_decay, precision)
    with precision.full_precision():
        # A loss whose second derivative is zero (the fused MAE's backward is constant in the logits)
        # leaves the last layer's bias gradient without a path back to θ: its Hessian row is zero.
        hv = torch.autograd.grad(
            g, theta, grad_outputs=[v[name] for name in names], allow_unused=True, materialize_grads=True
        )
    return g_acq, loss_acq.detach(), v, loss_ret, dict(zip(names, hv))


def _exact_reverse_traceable(model, params, buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision):
    """:func:`_exact_reverse` in ``torch.func``, which Dynamo traces: one ``grad`` of ⟨∇L_Acq(θ), v⟩."""

    def acq_dot_retention(p: TensorDict, b: BufferDict):
        with precision.full_precision():
            g, loss_acq = grad_and_value(partial(distill_loss, model))(p, b, x_new, t_new)
        g_acq = detached(g)
        v, loss_ret = _retention(model, detached(p), b, g_acq, x_mem, t_mem, alpha, weight_decay, precision)
        return tree_dot(g, v), (g_acq, loss_acq, v, loss_ret)

    with precision.full_precision():
        hv, (g_acq, loss_acq, v, loss_ret) = grad(acq_dot_retention, has_aux=True)(params, buffers)
    return g_acq, loss_acq, v, loss_ret, hv


def _inner_and_retention(model, params, buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision):
    """∇L_Acq(θ) in float32 (with L_Acq and the logits on x_new), then v and L_Ret(θ')."""
    with precision.full_precision():
        g_acq, (loss_acq, logits_new) = grad_and_value(partial(distill_loss_and_logits, model), has_aux=True)(
            params, buffers, x_new, t_new
        )
    v, loss_ret = _retention(model, params, buffers, g_acq, x_mem, t_mem, alpha, weight_decay, precision)
    return g_acq, loss_acq, logits_new, v, loss_ret


def _hvp_forward(
    model: nn.Module, params: TensorDict, frozen: BufferDict, x_new: Tensor, t_new: Tensor, v: TensorDict
) -> TensorDict:
    acq_grad = grad(lambda p: distill_loss(model, p, frozen, x_new, t_new))
    return jvp(acq_grad, (params,), (v,))[1]


def fd_epsilon(params: TensorDict, v: TensorDict) -> Tensor:
    """ε = sqrt(eps) (1 + ‖θ‖) / ‖v‖ for the one-sided difference, a device tensor (no sync)."""
    dtype = next(iter(params.values())).dtype
    v_norm = tree_norm(v).clamp_min(torch.finfo(dtype).tiny)
    return (torch.finfo(dtype).eps ** 0.5) * (1.0 + tree_norm(params)) / v_norm


def _hvp_finite_difference(
    model: nn.Module,
    params: TensorDict,
    frozen: BufferDict,
    x_new: Tensor,
    t_new: Tensor,
    v: TensorDict,
    g_acq: TensorDict,
    logits_new: Tensor,
) -> TensorDict:
    """(J(θ + εv)ᵀ c − J(θ)ᵀ c) / ε with J the Jacobian of the logits and c = ∂L_Acq/∂logits at θ.

    J(θ)ᵀ c is ∇L_Acq(θ), reused. Holding the loss's subgradient c fixed drops nothing: the MAE is
    linear in the logits between its kinks, so its own second derivative is zero; but the signs in
    c would flip for every logit that θ + εv carries across its teacher logit, and each flip adds a
    jump of order 1/(Nε) that swamps the difference (measured: BENCHMARKS.md).
    """
    eps = fd_epsilon(params, v)
    subgradient = grad(distill.mae)(logits_new, t_new)
    _, pullback = vjp(lambda p: student_logits(model, p, frozen, x_new), tree_axpy(eps, v, params))
    difference = tree_axpy(-1.0, g_acq, pullback(subgradient)[0])
    return dict(zip(difference, torch._foreach_div(list(difference.values()), eps)))


def lrwa_grads(
    model: nn.Module,
    params: TensorDict,
    buffers: TensorDict,
    x_new: Tensor,
    t_new: Tensor,
    x_mem: Tensor,
    t_mem: Tensor,
    *,
    options: LRWAOptions,
    align: bool = False,
    amp_dtype: Optional[torch.dtype] = None,
    loss_scale: Optional[Tensor] = None,
) -> tuple[TensorDict, TensorDict]:
    """The gradient of the LRWA objective (eq. 6) with respect to ``params``, and what it logs.

    ``model`` is run through ``torch.func.functional_call`` with ``params`` and ``buffers`` (dicts as
    from ``named_parameters()`` / ``named_buffers()``; BatchNorm running statistics in ``buffers``
    are updated in place, see the module docstring). ``t_new`` and ``t_mem`` are teacher logits;
    the loss is MAE with ``F.l1_loss`` semantics. ``options``: the inner step (``alpha``,
    ``weight_decay``), the ``objective`` (``paper`` or ``official``; ``released`` is the joint step,
    built by ``make_student_grads``), the ``hvp`` and its ``exact_method`` (``forward`` or ``reverse``).
    ``align``: also return the alignment cosine.

    Returns ``(grads, aux)``: ``grads`` keyed like ``params`` (times ``loss_scale`` when given);
    ``aux`` of 0-dim device tensors: ``loss`` (the objective), ``loss_acq`` = L_Acq(θ),
    ``loss_ret`` = L_Ret(θ'), with ``align`` ``grad_cos``. Nothing here synchronises the host.
    """
    if options.objective == "released":
        raise ValueError(
            "lrwa_grads computes the meta objectives; the released objective is the joint step: "
            "build the update with make_student_grads"
        )
    alpha, weight_decay, hvp = options.alpha, options.weight_decay, options.hvp
    precision = Precision(x_new.device.type, amp_dtype, loss_scale)
    frozen = frozen_running_stats(model, buffers)
    aux: TensorDict = {}

    if options.objective == "official":
        outer_grad, loss_cat = scaled_grad(partial(distill_loss, model), precision)(
            params, buffers, torch.cat([x_new, x_mem]), torch.cat([t_new, t_mem])
        )

    inner_buffers = frozen if options.objective == "official" else buffers
    if hvp == "exact" and options.exact_method == "reverse":
        g_acq, loss_acq, v, loss_ret, hv = _exact_reverse(
            model, params, inner_buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision
        )
    else:
        g_acq, loss_acq, logits_new, v, loss_ret = _inner_and_retention(
            model, params, inner_buffers, x_new, t_new, x_mem, t_mem, alpha, weight_decay, precision
        )
        with precision.full_precision():
            if hvp == "exact":
                hv = _hvp_forward(model, params, frozen, x_new, t_new, v)
            elif hvp == "fd":
                hv = _hvp_finite_difference(model, params, frozen, x_new, t_new, v, g_acq, logits_new)

    if options.objective == "paper":
        outer_grad = precision.scale(g_acq)
    grads = tree_axpy(1.0 - alpha * weight_decay, v, outer_grad)
    if hvp != "first_order":
        grads = tree_axpy(-alpha, hv, grads)

    aux["loss_acq"] = loss_acq
    aux["loss_ret"] = loss_ret
    aux["loss"] = (loss_cat if options.objective == "official" else loss_acq) + loss_ret
    if align:
        g_ret, _ = scaled_grad(partial(distill_loss, model), precision)(params, frozen, x_mem, t_mem)
        aux["grad_cos"] = tree_cosine(g_acq, g_ret)
    return grads, aux
