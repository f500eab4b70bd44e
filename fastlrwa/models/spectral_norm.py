"""Spectral normalisation as the authors' generator computes it, in the parametrization form.

The authors wrap their generator's convolutions in ``torch.nn.utils.spectral_norm``, the hook-based
version. Its power iteration differs from the parametrization version
(``torch.nn.utils.parametrizations.spectral_norm``) in two ways that change every generated image:
the vectors start as normalised Gaussian draws with no warm-up (the parametrization version runs 15
iterations at construction), and each training-mode forward updates ``v = Wᵀu / ‖Wᵀu‖`` before
``u = Wv / ‖Wv‖`` (the parametrization version updates ``u`` first). :class:`SpectralNorm`
reproduces the hook version's arithmetic, so a generator matches theirs step by step, while being a
parametrization, which ``torch.func.functional_call`` and ``torch.compile`` handle and the
hook-based version's forward pre-hook (rewriting a module attribute in every call) does not.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

EPS = 1e-12


class SpectralNorm(nn.Module):
    """``W / σ`` with σ = uᵀ W v from one power iteration per training-mode forward (``dim=0``).

    ``_u`` and ``_v`` are buffers, updated in place without gradient in train mode (like BatchNorm
    running statistics); in eval mode they are used as they stand.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        rows = weight.shape[0]
        columns = weight.numel() // rows
        self.register_buffer("_u", F.normalize(weight.new_empty(rows).normal_(0, 1), dim=0, eps=EPS))
        self.register_buffer("_v", F.normalize(weight.new_empty(columns).normal_(0, 1), dim=0, eps=EPS))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """σ of ``weight`` as a forward computes it (a power-iteration step first in train mode): 0-dim."""
        matrix = weight.flatten(1)
        if self.training:
            with torch.no_grad():
                F.normalize(torch.mv(matrix.t(), self._u), dim=0, eps=EPS, out=self._v)
                F.normalize(torch.mv(matrix, self._v), dim=0, eps=EPS, out=self._u)
        # Clones, so that the next forward's in-place update does not change what this one's backward reads.
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        return torch.dot(u, torch.mv(matrix, v))


def spectral_norm(module: nn.Module) -> nn.Module:
    """Register :class:`SpectralNorm` on ``module.weight``; the parameter is stored as
    ``parametrizations.weight.original`` and the vectors as ``parametrizations.weight.0._u`` / ``._v``."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight.detach()))
    return module


def spectral_sigma(module: nn.Module) -> torch.Tensor:
    """σ of a module registered by :func:`spectral_norm`, as its next forward computes it (and with the same
    power-iteration step in train mode); its weight is ``original / σ``."""
    parametrization = module.parametrizations.weight
    return parametrization[0].sigma(parametrization.original)


def unnormalised_weight(module: nn.Module) -> torch.Tensor:
    """The weight of a module registered by :func:`spectral_norm` before the division by σ."""
    return module.parametrizations.weight.original
