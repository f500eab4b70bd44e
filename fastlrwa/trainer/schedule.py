"""Learning-rate schedules, as multipliers of an optimiser's base rate."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_schedule(optimizer: torch.optim.Optimizer, total: int) -> LambdaLR:
    """The base rate times 0.5 (1 + cos(π t / ``total``)) after t scheduler steps, held at 0 from ``total`` on.

    The authors' ``CosineAnnealingLR`` to a minimum of 0, written as a closed form so that a restored
    scheduler resumes on the same values.
    """
    return LambdaLR(optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))


def constant_schedule(optimizer: torch.optim.Optimizer) -> LambdaLR:
    return LambdaLR(optimizer, lambda t: 1.0)
