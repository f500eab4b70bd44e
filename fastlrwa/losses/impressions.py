"""ZSKD's data impressions (Nayak et al., ICML 2019) as pure functions of tensors.

* :func:`class_similarity`: the cosine similarity of the teacher's class vectors (the rows of its last
  linear layer's weight), each row min-max normalised to [0, 1].
* :func:`dirichlet_targets`: soft targets y ~ Dir(beta * C[k]) for every impression of class k.
* :func:`impression_loss` / :func:`impression_step`: an impression is an image optimised from uniform noise
  so that the teacher's softmax at temperature T matches its target; one Adam step on a whole chunk of
  impressions at once, written out as tensor arithmetic so that no host sync and no optimiser object is
  involved.

Images live in pixel space [0, 1] here; the teacher sees them normalised with the dataset's statistics,
as it saw its training data. The loss is the *sum* of the impressions' cross-entropies, so each
impression's gradient, and with Adam's element-wise update its whole trajectory, does not depend on
which others share its chunk: the chunk size is a matter of speed, never of the result.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Added to every concentration: a min-max normalised row has a zero, and Dir needs alpha > 0 (the released code's).
CONCENTRATION_FLOOR = 1e-4


def class_similarity(weight: Tensor) -> Tensor:
    """``C[i, j] = cos(w_i, w_j)`` for the class vectors ``weight [K, d]``, each row min-max normalised to [0, 1]."""
    unit = F.normalize(weight.double(), dim=1)
    cosine = unit @ unit.T
    low = cosine.min(dim=1, keepdim=True).values
    high = cosine.max(dim=1, keepdim=True).values
    return ((cosine - low) / (high - low).clamp_min(torch.finfo(torch.float64).tiny)).to(weight.dtype)


def impression_classes(count: int, num_classes: int, betas: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """The class and the concentration scale beta of each of ``count`` impressions: equal numbers per class,
    class-major, and within a class equal shares per beta (``count`` must divide by ``num_classes * len(betas)``)."""
    share = count // (num_classes * len(betas))
    classes = torch.arange(num_classes).repeat_interleave(share * len(betas))
    scales = torch.tensor(betas, dtype=torch.float64).repeat_interleave(share).repeat(num_classes)
    return classes, scales


def dirichlet_targets(similarity: Tensor, classes: Tensor, scales: Tensor, seed: int) -> Tensor:
    """One soft target per impression, ``y_n ~ Dir(scales_n * C[classes_n] + floor)``, rows summing to 1.

    Drawn on the CPU in float64 from a stream of its own (``seed``), so that the targets, and the run's
    other random streams, are the same wherever and however often they are drawn.
    """
    concentration = scales[:, None] * similarity.double().cpu()[classes] + CONCENTRATION_FLOOR
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        targets = torch.distributions.Dirichlet(concentration).sample()
    return targets.to(similarity.dtype)


def impression_loss(
    teacher: nn.Module, pixels: Tensor, targets: Tensor, mean: Tensor, std: Tensor, temperature: float
) -> Tensor:
    """``sum_n CE(y_n, softmax(T(normalise(x_n)) / temperature))`` over the chunk."""
    logits = teacher((pixels - mean) / std)
    return -(targets * F.log_softmax(logits / temperature, dim=1)).sum()


class AdamState(NamedTuple):
    """Impressions in pixel space and their Adam moments; ``step`` counts the steps taken (a 0-dim tensor)."""

    pixels: Tensor
    first: Tensor
    second: Tensor
    step: Tensor


def start_state(pixels: Tensor) -> AdamState:
    zeros = torch.zeros_like(pixels)
    return AdamState(pixels, zeros, zeros.clone(), torch.zeros((), dtype=pixels.dtype, device=pixels.device))


def minmax_per_image(pixels: Tensor) -> Tensor:
    """Each image rescaled to span [0, 1] (the released code rescales after every step; per image here, so that
    an impression does not depend on its chunk)."""
    flat = pixels.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    rescaled = (flat - low) / (high - low).clamp_min(torch.finfo(pixels.dtype).tiny)
    return rescaled.view_as(pixels)


def impression_step(
    teacher: nn.Module,
    state: AdamState,
    targets: Tensor,
    mean: Tensor,
    std: Tensor,
    *,
    temperature: float,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[AdamState, Tensor]:
    """One Adam step (torch.optim.Adam's update, bias-corrected) on every impression of the chunk, then each image
    min-max rescaled to [0, 1]; returns the new state and the chunk's mean loss before the step (a 0-dim tensor).

    The teacher's parameters are frozen: the backward computes the input gradient only.
    """
    pixels = state.pixels.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = impression_loss(teacher, pixels, targets, mean, std, temperature)
        (grad,) = torch.autograd.grad(loss, pixels)
    beta1, beta2 = betas
    step = state.step + 1
    first = state.first.mul(beta1).add_(grad, alpha=1 - beta1)
    second = state.second.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
    denominator = (second / (1 - beta2**step)).sqrt_().add_(eps)
    moved = pixels.detach() - (lr / (1 - beta1**step)) * first / denominator
    return AdamState(minmax_per_image(moved), first, second, step), loss.detach() / pixels.shape[0]
