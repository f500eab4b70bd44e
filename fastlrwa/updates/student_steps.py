"""The student updates as one kind of function, and the factory the trainer builds them with.

* ``plain`` (DAFL, DFAD, DFQ, DFKD*): ∇ MAE(S(x_new), t_new).
* ``joint`` (MB-DFKD, PRE-DFKD): ``objective="paper"``: ∇[MAE(S(x_new), t_new) + MAE(S(x_mem), t_mem)],
  two forwards, each with its own BatchNorm batch statistics; ``objective="official"`` (the
  authors' code): one forward on cat(x_new, x_mem) and the MAE over all its logits.
* ``lrwa``: :func:`fastlrwa.updates.lrwa.lrwa_grads`.

Every forward here updates the BatchNorm running statistics, as a train-mode module call would.
Under ``amp_dtype`` the forwards run under autocast and the gradients come out float32.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Mapping, Optional

import torch
from torch import Tensor, nn

from fastlrwa.errors import ConfigError
from fastlrwa.losses import distill
from fastlrwa.updates.amp import Precision, scaled_grad
from fastlrwa.updates.functional import StudentStep, TensorDict, build_step, distill_loss, student_logits
from fastlrwa.updates.lrwa import ExactMethod, HvpMode, Objective, check_lrwa_options, check_objective, make_lrwa_step

StepKind = Literal["plain", "joint", "lrwa"]
STEP_KINDS: tuple[str, ...] = ("plain", "joint", "lrwa")


def plain_grads(model: nn.Module, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor, *,
                amp_dtype: Optional[torch.dtype] = None,
                loss_scale: Optional[Tensor] = None) -> tuple[TensorDict, TensorDict]:
    """∇ L_Acq: the update of the methods without replay. ``aux``: ``loss``, ``loss_acq``."""
    precision = Precision(x_new.device.type, amp_dtype, loss_scale)
    grads, loss = scaled_grad(partial(distill_loss, model), precision)(params, buffers, x_new, t_new)
    return grads, {"loss": loss, "loss_acq": loss}


def _sum_of_losses(model: nn.Module, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor,
                   x_mem: Tensor, t_mem: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    loss_acq = distill_loss(model, params, buffers, x_new, t_new)
    loss_ret = distill_loss(model, params, buffers, x_mem, t_mem)
    return loss_acq + loss_ret, (loss_acq.detach(), loss_ret.detach())


def _concatenated_loss(model: nn.Module, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor,
                       x_mem: Tensor, t_mem: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    logits = student_logits(model, params, buffers, torch.cat([x_new, x_mem]))
    loss = distill.mae(logits, torch.cat([t_new, t_mem]))
    split = x_new.shape[0]
    # The two parts come free from the one forward; they are measured under the statistics of the
    # concatenated batch, which is what this objective trains with.
    parts = (distill.mae(logits[:split], t_new).detach(), distill.mae(logits[split:], t_mem).detach())
    return loss, parts


def joint_grads(model: nn.Module, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor,
                x_mem: Tensor, t_mem: Tensor, *, objective: Objective = "paper",
                amp_dtype: Optional[torch.dtype] = None,
                loss_scale: Optional[Tensor] = None) -> tuple[TensorDict, TensorDict]:
    """The replay baselines' update, L_Acq + L_Ret. ``aux``: ``loss``, ``loss_acq``, ``loss_ret``.

    With ``objective="official"`` ``loss`` is the MAE over the concatenated batch and
    ``loss_acq``/``loss_ret`` are its two parts (row blocks of the same forward).
    """
    check_objective(objective)
    precision = Precision(x_new.device.type, amp_dtype, loss_scale)
    loss_fn = _sum_of_losses if objective == "paper" else _concatenated_loss
    grads, (loss, (loss_acq, loss_ret)) = scaled_grad(partial(loss_fn, model), precision, has_aux=True)(
        params, buffers, x_new, t_new, x_mem, t_mem)
    return grads, {"loss": loss, "loss_acq": loss_acq, "loss_ret": loss_ret}


def make_student_step(
    kind: StepKind,
    model: nn.Module,
    *,
    objective: Objective = "paper",
    alpha: float = 0.9,
    weight_decay: float = 5e-4,
    hvp: HvpMode = "exact",
    exact_method: ExactMethod = "reverse",
    log_alignment: bool = True,
    amp_dtype: Optional[torch.dtype] = None,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> StudentStep:
    """The trainer's one entry point: a :class:`~fastlrwa.updates.functional.StudentStep` of ``kind``.

    ``objective`` applies to ``joint`` and ``lrwa``; ``alpha``, ``weight_decay``, ``hvp``,
    ``exact_method`` and ``log_alignment`` to ``lrwa`` only (see :func:`make_lrwa_step`).
    ``amp_dtype``: autocast dtype or ``None`` (as from ``fastlrwa.runtime.amp_dtype``); with
    float16 pass ``loss_scale`` to each call (see ``fastlrwa.updates.amp``). ``compile``: build the
    step with ``torch.compile(fullgraph=True)`` once. ``cuda_graphs``: replay it as a CUDA graph.
    """
    if kind not in STEP_KINDS:
        raise ConfigError(f"student update {kind!r} is not supported; use one of: {', '.join(STEP_KINDS)}")
    check_lrwa_options(objective, hvp, exact_method)
    if kind == "lrwa":
        return make_lrwa_step(model, alpha=alpha, weight_decay=weight_decay, objective=objective, hvp=hvp,
                              exact_method=exact_method, log_alignment=log_alignment, amp_dtype=amp_dtype,
                              compile=compile, cuda_graphs=cuda_graphs)
    if kind == "plain":
        update = partial(plain_grads, model, amp_dtype=amp_dtype)
    else:
        update = partial(joint_grads, model, objective=objective, amp_dtype=amp_dtype)
    return build_step(update, compile=compile, cuda_graphs=cuda_graphs)


def install_grads(params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> None:
    """Hand a step's gradients to a ``torch.optim`` optimiser over ``params``, without a copy.

    Pair it with ``torch.optim.SGD(..., fused=True)`` (CPU and CUDA) so the update is a few
    multi-tensor kernels. With ``cuda_graphs`` the next call overwrites these tensors: step the
    optimiser before calling the update again.
    """
    for name, param in params.items():
        param.grad = grads[name]
