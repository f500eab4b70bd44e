"""The paper's generator G(z): latent vector to an image in the teacher's normalised input space."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from fastlrwa.errors import ConfigError

BASE_CHANNELS = 128
# eps=0.8 in the two inner BatchNorms is the authors' setting (inherited from DAFL), not a typo for 1e-5.
INNER_BN_EPS = 0.8
LEAKY_SLOPE = 0.2


class Generator(nn.Module):
    """Linear(latent -> W*(s/4)^2) -> (W, s/4, s/4) -> BN -> up x2 -> spectral-normed conv3x3 W
    -> BN(eps 0.8) -> LeakyReLU(0.2) -> up x2 -> conv3x3 W/2 -> BN(eps 0.8) -> LeakyReLU(0.2)
    -> conv3x3 to ``channels`` -> tanh -> BN without affine; W = ``width``, 128 in the paper.

    Its cost grows with W^2 and dwarfs a LeNet student's, so the CPU presets use a narrower W.

    The last BatchNorm standardises every channel, which puts the images in the (normalised) range the
    teacher was trained on. Spectral norm is the parametrization version, so it works with
    ``torch.func.functional_call`` and appears in the state_dict as ``...parametrizations.weight.original``
    plus the power-iteration buffers ``_u`` and ``_v`` (updated in train mode, like BatchNorm statistics).
    """

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = BASE_CHANNELS) -> None:
        super().__init__()
        self.width = width
        self.latent_dim = latent_dim
        self.channels = channels
        self.image_size = image_size
        self.base_size = image_size // 4
        self.project = nn.Linear(latent_dim, width * self.base_size**2)
        self.project_norm = nn.BatchNorm2d(width)
        self.decode = nn.Sequential(
            nn.Upsample(scale_factor=2),
            spectral_norm(nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1)),
            nn.BatchNorm2d(width, eps=INNER_BN_EPS),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width // 2, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(width // 2, eps=INNER_BN_EPS),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(width // 2, channels, kernel_size=3, stride=1, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latent ``[N, latent_dim]`` to images ``[N, channels, image_size, image_size]``."""
        x = self.project(z).unflatten(1, (self.width, self.base_size, self.base_size))
        return self.decode(self.project_norm(x))


def build_generator(*, latent_dim: int, channels: int, image_size: int, width: int = BASE_CHANNELS) -> Generator:
    """The paper's generator; ``image_size`` must be a multiple of 4 (two x2 upsamplings)."""
    for label, value in (("latent_dim", latent_dim), ("channels", channels), ("image_size", image_size),
                         ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"generator {label} must be a positive integer, got {value!r}")
    if image_size % 4 != 0:
        raise ConfigError(f"generator image_size must be a multiple of 4, got {image_size}; use 32 or 64")
    if width < 2:
        raise ConfigError(f"generator width must be at least 2 (its second conv has width/2 channels), got {width}")
    return Generator(latent_dim, channels, image_size, width)
