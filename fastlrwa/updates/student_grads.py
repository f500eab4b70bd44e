"""The student updates' gradient functions, and the factory the trainer builds them with.

* ``plain`` (DAFL, DFAD, DFQ, DFKD*): ∇ MAE(S(x_new), t_new).
* ``joint`` (MB-DFKD, PRE-DFKD), ``JointOptions.objective``: ``paper``: ∇[MAE(S(x_new), t_new) +
  MAE(S(x_mem), t_mem)], two forwards, each with its own BatchNorm batch statistics; ``official``
  (the authors' code): one forward on cat(x_new, x_mem) and the MAE over all its logits.
* ``lrwa``: :func:`fastlrwa.updates.lrwa.lrwa_grads`, options in ``LRWAOptions``.
* ``kd`` (ZSKD): ∇ T² CE(softmax(t_new / T), softmax(S(x_new) / T)), ``KDOptions``.

Every kind but ``lrwa`` is a loss (``plain_loss``, ``joint_loss``, ``kd_loss``) that ``loss_grads`` differentiates.

The LRWA objective ``released`` is what the authors' released LRWA step computes: it calls
``higher.innerloop_ctx`` with ``copy_initial_weights=True`` (higher's default), so its retention loss
after the inner step sends no gradient to the student and the update is the joint step on
cat(x_new, x_mem) of MB-DFKD (tests/test_released_update.py). It is built as that joint step,
without the inner step whose result is discarded.

Every forward here updates the BatchNorm running statistics, as a train-mode module call would.
Under ``amp_dtype`` the forwards run under autocast and the gradients come out float32.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping, Optional, get_args

import torch
from torch import Tensor, nn

from fastlrwa.losses import distill
from fastlrwa.updates.amp import Precision, scaled_grad
from fastlrwa.updates.functional import StudentGrads, TensorDict, distill_loss, student_logits
from fastlrwa.updates.lrwa import lrwa_grads
from fastlrwa.updates.options import JointObjective, JointOptions, KDOptions, LRWAOptions, StudentUpdateKind

# A loss and the parts of it to log, as the ``aux`` of ``torch.func.grad``.
LossParts = tuple[Tensor, TensorDict]


def plain_loss(model: nn.Module, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor) -> LossParts:
    """L_Acq = MAE(S(x_new), t_new), the loss of the methods without replay."""
    loss = distill_loss(model, params, buffers, x_new, t_new)
    return loss, {"loss_acq": loss.detach()}


def kd_loss(
    model: nn.Module, temperature: float, params: TensorDict, buffers: TensorDict, x_new: Tensor, t_new: Tensor
) -> LossParts:
    """ZSKD's transfer loss, soft-target KD at ``temperature``."""
    loss = distill.soft_cross_entropy(student_logits(model, params, buffers, x_new), t_new, temperature)
    return loss, {"loss_acq": loss.detach()}


def joint_loss(
    model: nn.Module, objective: JointObjective, params: TensorDict, buffers: TensorDict, *batches: Tensor
) -> LossParts:
    """The replay baselines' loss on ``batches = (x_new, t_new, x_mem, t_mem)``, L_Acq + L_Ret.

    ``paper``: the sum of the two batches' losses, two forwards. ``official``: the MAE over the
    concatenated batch, one forward; ``loss_acq``/``loss_ret`` are its two parts (row blocks of that forward),
    measured under the statistics of the concatenated batch, which is what this objective trains with.
    """
    x_new, t_new, x_mem, t_mem = batches
    if objective == "paper":
        loss_acq = distill_loss(model, params, buffers, x_new, t_new)
        loss_ret = distill_loss(model, params, buffers, x_mem, t_mem)
        return loss_acq + loss_ret, {"loss_acq": loss_acq.detach(), "loss_ret": loss_ret.detach()}
    logits = student_logits(model, params, buffers, torch.cat([x_new, x_mem]))
    split = x_new.shape[0]
    parts = {"loss_acq": distill.mae(logits[:split], t_new), "loss_ret": distill.mae(logits[split:], t_mem)}
    return distill.mae(logits, torch.cat([t_new, t_mem])), {name: part.detach() for name, part in parts.items()}


def loss_grads(
    loss_fn: Callable[..., LossParts],
    params: TensorDict,
    buffers: TensorDict,
    *batches: Tensor,
    amp_dtype: Optional[torch.dtype] = None,
    loss_scale: Optional[Tensor] = None,
) -> tuple[TensorDict, TensorDict]:
    """∇ ``loss_fn(params, buffers, *batches)`` (one of the losses above), the update of every kind but ``lrwa``.

    ``aux``: ``loss`` and the loss's parts. The forwards run under autocast in ``amp_dtype``; with ``loss_scale``
    the gradients are those of the scaled loss (``fastlrwa.updates.amp``).
    """
    precision = Precision(batches[0].device.type, amp_dtype, loss_scale)
    grads, (loss, parts) = scaled_grad(loss_fn, precision, has_aux=True)(params, buffers, *batches)
    return grads, {"loss": loss, **parts}


# The authors' released LRWA step: higher's copy_initial_weights=True leaves the joint step on cat(new, memory).
RELEASED_AS_JOINT = JointOptions(objective="official")


def make_student_grads(
    kind: StudentUpdateKind,
    model: nn.Module,
    *,
    lrwa: LRWAOptions = LRWAOptions(),
    joint: JointOptions = JointOptions(),
    kd: KDOptions = KDOptions(),
    align: bool = False,
    amp_dtype: Optional[torch.dtype] = None,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> StudentGrads:
    """The trainer's one entry point: the gradient function of student update ``kind``, built once.

    ``lrwa`` applies to ``lrwa`` (with ``objective="released"`` the result is the joint step of
    ``RELEASED_AS_JOINT``: see the module docstring), ``joint`` to ``joint``, ``kd`` to ``kd``; ``align`` asks an
    ``lrwa`` update for the alignment cosine. ``amp_dtype``: autocast dtype or ``None`` (as from
    ``fastlrwa.runtime.amp_dtype``); with float16 pass ``loss_scale`` to each call (see
    ``fastlrwa.updates.amp``). ``compile``: build it with ``torch.compile(fullgraph=True)`` once.
    ``cuda_graphs``: replay it as a CUDA graph (see :class:`~fastlrwa.updates.functional.StudentGrads`).
    """
    if kind == "lrwa" and lrwa.objective == "released":
        kind, joint = "joint", RELEASED_AS_JOINT
    if kind == "lrwa":
        grads_fn = partial(lrwa_grads, model, options=lrwa, align=align, amp_dtype=amp_dtype)
    elif kind == "plain":
        grads_fn = partial(loss_grads, partial(plain_loss, model), amp_dtype=amp_dtype)
    elif kind == "joint":
        grads_fn = partial(loss_grads, partial(joint_loss, model, joint.objective), amp_dtype=amp_dtype)
    elif kind == "kd":
        grads_fn = partial(loss_grads, partial(kd_loss, model, kd.temperature), amp_dtype=amp_dtype)
    else:
        raise ValueError(f"no student update {kind!r}; the updates are: {', '.join(get_args(StudentUpdateKind))}")
    return StudentGrads(grads_fn, compile=compile, cuda_graphs=cuda_graphs)


def install_grads(params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> None:
    """Hand a step's gradients to a ``torch.optim`` optimiser over ``params``, without a copy where layouts agree.

    Pair it with ``torch.optim.SGD(..., fused=True)`` (CPU and CUDA) so the update is a few
    multi-tensor kernels. With ``cuda_graphs`` the next call overwrites these tensors: step the
    optimiser before calling the update again.

    A gradient whose strides differ from its parameter's (the double backward of a convolution returns
    its weight's gradient transposed in memory) is copied into the parameter's layout first: the fused
    CPU SGD of torch 2.14 reads the gradient's memory in the parameter's order whatever its strides,
    a silently wrong update (tests/test_student_grads.py). Autograd's own gradients obey this layout
    contract; ours are handed over directly, so they must too.
    """
    for name, param in params.items():
        grad = grads[name]
        param.grad = grad if grad.stride() == param.stride() else torch.empty_like(param).copy_(grad)
