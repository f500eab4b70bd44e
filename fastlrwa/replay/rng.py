"""Random-number generators that live where the random indices or noise are drawn."""

from __future__ import annotations

import torch


def canonical_device(device: torch.device | str) -> torch.device:
    """``device`` with an explicit CUDA index, so generators and tensors compare equal."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def rng_on(device: torch.device, rng: torch.Generator | None) -> torch.Generator:
    """A random-number generator on ``device``: ``rng`` itself if it already lives there.

    Without one, the seed is drawn from torch's global generator so ``torch.manual_seed`` makes
    runs reproducible. A generator on another device cannot drive draws on this one; it is
    replaced by a generator on ``device`` seeded with its initial seed, which keeps runs seeded
    by the caller reproducible.
    """
    if rng is not None and canonical_device(rng.device) == device:
        return rng
    if rng is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    else:
        seed = rng.initial_seed()
    replacement = torch.Generator(device=device)
    replacement.manual_seed(seed)
    return replacement
