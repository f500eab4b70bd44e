"""Teacher-student discrepancy losses used by the student updates."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mae(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all N*C logits (``F.l1_loss`` semantics), the paper's L_KD."""
    return F.l1_loss(student_logits, teacher_logits)
