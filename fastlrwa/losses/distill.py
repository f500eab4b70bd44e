"""Teacher-student discrepancy losses used by the student updates."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastlrwa.kernels import fused_mae


def mae(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all N*C logits (``F.l1_loss`` semantics), the paper's L_KD.

    The fused kernel on CUDA, the torch reference elsewhere; its backward stays differentiable, so
    the LRWA meta update can take the Hessian-vector product through it.
    """
    return fused_mae(student_logits, teacher_logits)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KD loss as ZSKD trains with it: ``T² · mean_n CE(softmax(t_n / T), softmax(s_n / T))``.

    The ``T²`` keeps the gradient's scale independent of the temperature."""
    targets = F.softmax(teacher_logits.float() / temperature, dim=1)
    log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    return -(targets * log_probs).sum(dim=1).mean() * temperature**2
