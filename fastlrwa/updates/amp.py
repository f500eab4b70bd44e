"""Mixed precision inside a student update.

The policy: parameters and gradients stay float32; forwards that only feed first-order gradients
run under autocast in ``dtype`` (bf16, or fp16 on CUDA); whatever feeds a difference or a second
derivative (the inner step of LRWA and its Hessian-vector product) runs without autocast, because
rounding there is amplified (by 1/ε in the finite difference).

fp16 needs loss scaling. A step called with ``loss_scale=S`` (a 0-dim device tensor, e.g.
``scaler.scale(torch.ones((), device=...))`` of a ``torch.amp.GradScaler``) returns the gradient of
``S * J``, which is what ``(S * J).backward()`` leaves in ``.grad`` and what ``GradScaler.step``
unscales and checks for infinities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

import torch
from torch import Tensor
from torch.func import grad

from fastlrwa.runtime import autocast_to
from fastlrwa.updates.functional import TensorDict


@dataclass(frozen=True)
class Precision:
    """Where an update runs and in which autocast dtype (``None``: float32 throughout)."""

    device_type: str
    dtype: Optional[torch.dtype]
    loss_scale: Optional[Tensor]

    def autocast(self) -> ContextManager:
        """Autocast in ``dtype``; with ``dtype=None`` float32, also under an outer autocast."""
        return autocast_to(self.device_type, self.dtype)

    def full_precision(self) -> ContextManager:
        """Autocast off."""
        return autocast_to(self.device_type, None)

    def scale(self, grads: TensorDict) -> TensorDict:
        """Multiply float32 gradients by the loss scale, so they add up with scaled ones."""
        if self.loss_scale is None:
            return grads
        return dict(zip(grads, torch._foreach_mul(list(grads.values()), self.loss_scale)))


def scaled_grad(
    loss_fn: Callable[..., Any], precision: Precision, *, has_aux: bool = False
) -> Callable[..., tuple[TensorDict, Any]]:
    """``∇(S·L)`` of ``loss_fn`` with respect to its first argument, its forward under autocast.

    The returned function gives ``(grads, loss)``, or ``(grads, (loss, extra))`` when ``has_aux``
    and ``loss_fn`` returns ``(loss, extra)``; the loss is unscaled. The backward runs outside the
    autocast region, as autocast recommends, in the dtypes the forward chose.
    """

    def scaled_loss(*args: Any) -> tuple[Tensor, tuple[Tensor, Any]]:
        with precision.autocast():
            loss, extra = loss_fn(*args) if has_aux else (loss_fn(*args), ())
        scaled = loss if precision.loss_scale is None else loss * precision.loss_scale
        return scaled, (loss.detach(), extra)

    def grads_and_loss(*args: Any) -> tuple[TensorDict, Any]:
        grads, (loss, extra) = grad(scaled_loss, has_aux=True)(*args)
        return grads, ((loss, extra) if has_aux else loss)

    return grads_and_loss
