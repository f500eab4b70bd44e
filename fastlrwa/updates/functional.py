"""Helpers shared by the student updates: the functional loss, parameter-dict arithmetic, and the builder of
a gradient function.

Words used throughout: a *grads* function is a pure function of tensors, ``(params, buffers, batches)
-> (grads, aux)`` (``loss_grads`` of a loss, ``lrwa_grads``), built once as a :class:`StudentGrads`;
an *update* is the object that applies one (``StudentUpdate``, ``GeneratorUpdate``).

Parameters and buffers travel as dicts of tensors keyed like ``named_parameters()`` /
``named_buffers()``; the network is run through ``torch.func.functional_call`` so that
``torch.func`` transforms can differentiate with respect to the parameter dict.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call

from fastlrwa.errors import ConfigError
from fastlrwa.losses import distill
from fastlrwa.models.batchnorm import buffer_name, tracked_batchnorms
from fastlrwa.runtime import compiled

TensorDict = dict[str, Tensor]
BufferDict = Mapping[str, Optional[Tensor]]


def student_logits(model: nn.Module, params: Mapping[str, Tensor], buffers: BufferDict, x: Tensor) -> Tensor:
    """The student's logits on ``x`` with the given parameters and buffers.

    In train mode BatchNorm normalises with the batch statistics and updates, in place, the
    running statistics found in ``buffers`` (none where they are ``None``).
    """
    return functional_call(model, (dict(params), dict(buffers)), (x,))


def distill_loss_and_logits(
    model: nn.Module, params: Mapping[str, Tensor], buffers: BufferDict, x: Tensor, teacher_logits: Tensor
) -> tuple[Tensor, Tensor]:
    """L_KD of the paper, the MAE between student and teacher logits (``F.l1_loss`` semantics), and
    the student's logits (detached).

    The MAE goes through ``fastlrwa.losses.distill`` so that routing it to a fused kernel is a
    change in that one module. Autocast computes ``l1_loss`` in float32.
    """
    logits = student_logits(model, params, buffers, x)
    return distill.mae(logits, teacher_logits), logits.detach()


def distill_loss(
    model: nn.Module, params: Mapping[str, Tensor], buffers: BufferDict, x: Tensor, teacher_logits: Tensor
) -> Tensor:
    """L_KD alone (see :func:`distill_loss_and_logits`)."""
    return distill_loss_and_logits(model, params, buffers, x, teacher_logits)[0]


def frozen_running_stats(model: nn.Module, buffers: Mapping[str, Tensor]) -> dict[str, Optional[Tensor]]:
    """``buffers`` with the running statistics of every BatchNorm layer replaced by ``None``.

    A train-mode BatchNorm without running statistics normalises with the batch statistics exactly
    as before but updates nothing, so the extra forwards of an update (Hessian-vector product,
    finite difference, alignment probe) leave the running statistics alone. No copy is made, and
    unlike a cloned buffer a ``None`` is not an in-place mutation, which ``torch.func.jvp`` refuses
    on tensors it did not receive as inputs.
    """
    frozen: dict[str, Optional[Tensor]] = dict(buffers)
    for prefix, _ in tracked_batchnorms(model):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            frozen[buffer_name(prefix, name)] = None
    return frozen


def detached(tensors: Mapping[str, Tensor]) -> TensorDict:
    return {name: tensor.detach() for name, tensor in tensors.items()}


def tree_dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Inner product of two parameter-shaped dicts, as if both were flattened into one vector."""
    return torch.stack([torch.sum(a[name] * b[name]) for name in a]).sum()


def tree_norm(a: Mapping[str, Tensor]) -> Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(a.values()))))


def tree_cosine(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Cosine of the angle between two parameter-shaped dicts; 0 when either is zero."""
    denominator = (tree_norm(a) * tree_norm(b)).clamp_min(torch.finfo(torch.float32).tiny)
    return tree_dot(a, b) / denominator


def tree_axpy(alpha: float | Tensor, x: Mapping[str, Tensor], y: Mapping[str, Tensor]) -> TensorDict:
    """``alpha * x + y`` for parameter-shaped dicts, with one foreach kernel launch per list."""
    names = list(y)
    result = torch._foreach_mul([x[name] for name in names], alpha)
    torch._foreach_add_(result, [y[name] for name in names])
    return dict(zip(names, result))


def sgd_step(params: Mapping[str, Tensor], grads: Mapping[str, Tensor], lr: float, weight_decay: float) -> TensorDict:
    """``θ − lr (g + λ θ)``: the first step of SGD with momentum and weight decay (the inner step of eq. 6)."""
    names = list(params)
    theta = [params[name] for name in names]
    step = torch._foreach_add([grads[name] for name in names], theta, alpha=weight_decay)
    return dict(zip(names, torch._foreach_add(theta, step, alpha=-lr)))


def _device_layout(x: Tensor) -> Tensor:
    """Images in channels_last on CUDA, where cuDNN's NHWC convolutions are faster; as given elsewhere."""
    x = x.detach()
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.dim() == 4 else x


class StudentGrads:
    """A built student grads function: ``(grads, aux)`` from the current parameters, buffers and batches.

    Built from ``grads_fn(params, buffers, *batches, loss_scale=...)``. A call detaches its inputs (an update
    never extends an outer autograd graph) and, on CUDA, hands images over in channels_last. ``x_mem``/``t_mem``
    are ``None`` for the plain update. ``grads`` is keyed like ``params``; ``aux`` holds 0-dim device tensors to
    log. ``buffers`` are the live module buffers: BatchNorm running statistics are updated in place.

    ``compile=True`` compiles ``grads_fn`` once with ``torch.compile(fullgraph=True)``, so a graph break is an
    error rather than a silent slowdown; Inductor's cache is kept in the user cache directory. ``cuda_graphs=True``
    (CUDA, static shapes, needs ``compile``) replays it as a CUDA graph (``mode="reduce-overhead"``): the
    buffers are marked as static addresses so their in-place update does not disable the graph, and each call
    starts a new graph step, so tensors returned by one call are overwritten by the next — copy whatever must
    outlive it.
    """

    def __init__(
        self, grads_fn: Callable[..., tuple[TensorDict, TensorDict]], *, compile: bool, cuda_graphs: bool = False
    ) -> None:
        if cuda_graphs and not compile:
            raise ConfigError("CUDA graphs replay a compiled step; build it with compile=True")
        if compile:
            mode = "reduce-overhead" if cuda_graphs else None
            grads_fn = compiled(grads_fn, fullgraph=True, dynamic=False, mode=mode)
        self._grads_fn = grads_fn
        self._cuda_graphs = cuda_graphs

    def __call__(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor],
        x_new: Tensor,
        t_new: Tensor,
        x_mem: Optional[Tensor] = None,
        t_mem: Optional[Tensor] = None,
        *,
        loss_scale: Optional[Tensor] = None,
    ) -> tuple[TensorDict, TensorDict]:
        batches = [_device_layout(x_new), t_new.detach()]
        if x_mem is not None:
            batches += [_device_layout(x_mem), t_mem.detach()]
        if self._cuda_graphs:
            for buffer in buffers.values():
                torch._dynamo.mark_static_address(buffer)
            torch.compiler.cudagraph_mark_step_begin()
        return self._grads_fn(detached(params), dict(buffers), *batches, loss_scale=loss_scale)
