"""What the trainer measures to show why a run plateaus, besides the losses (README, "Diagnostics").

- ``agree_gen``: the fraction of a generator step's batch on which the student's argmax equals the
  teacher's. Both logits are already computed by the step (the adversarial term needs them), so it
  costs two argmaxes and a mean; DAFL, whose generator objective never runs the student, logs none.
- ``agree_test``: the same on the test set, against the teacher's test predictions, computed once per run.
- ``gen_class_hist`` / ``gen_class_entropy``: the teacher's predicted classes on the batches the
  student trains on, counted over the epoch (``EpochStats.count``), and the entropy of that
  histogram divided by log(classes): 1.0 is every class equally often, 0.0 a single class.
- A grid of samples from fixed latents, drawn once per run from a generator of their own seeded
  with the run's seed, so that the training's random stream is untouched and epochs compare.

Every per-step value stays on the device; the host reads them at the epoch's end.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

# The fixed latents' stream is the run seed's, offset so it never equals the training stream of rank 0.
SAMPLE_SEED_OFFSET = 7919


def argmax_agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The fraction of rows whose argmax is the same in both (a 0-dim float32 device tensor)."""
    return (student_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).to(torch.float32).mean()


def normalised_entropy(counts: list[float]) -> float:
    """Entropy of the distribution ``counts / sum(counts)`` over log(len(counts)); 0.0 for no counts."""
    total = sum(counts)
    if total <= 0 or len(counts) < 2:
        return 0.0
    entropy = -sum(c / total * math.log(c / total) for c in counts if c > 0)
    return entropy / math.log(len(counts))


def fixed_latents(
    count: int, latent_dim: int, seed: int, device: torch.device, offset: int = SAMPLE_SEED_OFFSET
) -> torch.Tensor:
    """``count`` latents drawn from their own CPU generator seeded ``seed + offset`` (the same values on every
    device)."""
    rng = torch.Generator().manual_seed(seed + offset)
    return torch.randn(count, latent_dim, generator=rng).to(device)


def generated_samples(generator: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """The generator's images for ``latents`` in eval mode (running statistics, no spectral-norm power
    step), so that drawing them changes no state; the training flags are restored after."""
    flags = [(module, module.training) for module in generator.modules()]
    generator.eval()
    try:
        with torch.no_grad():
            return generator(latents).float()
    finally:
        for module, flag in flags:
            module.training = flag


def image_grid(images: torch.Tensor) -> torch.Tensor:
    """A ``[3, H, W]`` grid in [0, 1] of ``images`` (``[N, C, h, w]``), ceil(sqrt(N)) per row, each image
    stretched to its own range (the generator's output scale drifts during training)."""
    from torchvision.utils import make_grid

    return make_grid(
        images.detach().cpu(), nrow=math.ceil(math.sqrt(images.shape[0])), normalize=True, scale_each=True, padding=2
    )
