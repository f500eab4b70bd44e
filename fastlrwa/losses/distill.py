"""Teacher-student discrepancy losses used by the student updates."""

from __future__ import annotations

import torch

from fastlrwa.kernels import fused_mae


def mae(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all N*C logits (``F.l1_loss`` semantics), the paper's L_KD.

    The fused kernel on CUDA, the torch reference elsewhere; its backward stays differentiable, so
    the LRWA meta update can take the Hessian-vector product through it.
    """
    return fused_mae(student_logits, teacher_logits)
