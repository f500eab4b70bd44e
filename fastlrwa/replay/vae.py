"""A convolutional VAE sized for the generator's images (PRE-DFKD's generative memory).

The paper reuses PRE-DFKD's VAE without describing it, so the architecture here is fastlrwa's:
a stride-2 convolution stack from the image down to 4x4, a linear layer to (mu, logvar), and a
mirrored decoder. There is no normalisation layer, so training and sampling run the same
function whatever the batch.

The decoder ends in a plain 3x3 convolution, with no tanh: the generator's images come out of a
BatchNorm without affine parameters, i.e. roughly zero-mean, unit-variance per channel and not
bounded, and the VAE must reproduce that space for the teacher to see replay samples like the
ones it was distilled on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fastlrwa.errors import ConfigError

SUPPORTED_CHANNELS = (1, 3)
SUPPORTED_IMAGE_SIZES = (32, 64)
BOTTOM_SIZE = 4


def _stage_widths(image_size: int, width: int) -> list[int]:
    """Channel widths after each stride-2 stage, doubling up to 8x ``width``."""
    stages = (image_size // BOTTOM_SIZE).bit_length() - 1
    return [width * 2 ** min(stage, 3) for stage in range(stages)]


class VAE(nn.Module):
    """Encoder ``x -> (mu, logvar)`` and decoder ``z -> x`` for ``channels`` x ``image_size`` images.

    Args:
        channels: 1 or 3.
        image_size: 32 or 64 (square images).
        latent_dim: size of z (fastlrwa's default 256).
        width: channels of the first encoder stage; later stages double it, up to 8x.
    """

    def __init__(self, channels: int, image_size: int, latent_dim: int = 256, width: int = 64):
        super().__init__()
        if channels not in SUPPORTED_CHANNELS:
            raise ConfigError(f"the replay VAE supports images with {SUPPORTED_CHANNELS} channels, not {channels}")
        if image_size not in SUPPORTED_IMAGE_SIZES:
            raise ConfigError(f"the replay VAE supports image sizes {SUPPORTED_IMAGE_SIZES}, not {image_size}")
        if latent_dim < 1 or width < 1:
            raise ConfigError(f"the replay VAE needs a positive latent size and width, got {latent_dim} and {width}")
        self.channels = channels
        self.image_size = image_size
        self.latent_dim = latent_dim
        widths = _stage_widths(image_size, width)
        bottom = widths[-1] * BOTTOM_SIZE * BOTTOM_SIZE

        encoder: list[nn.Module] = []
        for in_channels, out_channels in zip([channels, *widths[:-1]], widths):
            encoder += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.to_posterior = nn.Linear(bottom, 2 * latent_dim)

        self.from_latent = nn.Sequential(nn.Linear(latent_dim, bottom), nn.LeakyReLU(0.2))
        decoder: list[nn.Module] = [nn.Unflatten(1, (widths[-1], BOTTOM_SIZE, BOTTOM_SIZE))]
        up_widths = [*reversed(widths[:-1]), widths[0]]
        for in_channels, out_channels in zip(reversed(widths), up_widths):
            decoder += [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        decoder.append(nn.Conv2d(widths[0], channels, 3, padding=1))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior q(z|x): (mu, logvar), each [B, latent_dim]."""
        return self.to_posterior(self.encoder(images)).chunk(2, dim=1)

    def decode(self, latents: Tensor) -> Tensor:
        """Images [B, C, H, W] in the generator's normalised space."""
        return self.decoder(self.from_latent(latents))

    def forward(self, images: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruct through the reparameterised sample z = mu + exp(logvar / 2) * noise.

        ``noise`` (standard normal, [B, latent_dim]) is an argument so the caller owns the random
        stream: resumes are exact and tests can reproduce a step.
        """
        mu, logvar = self.encode(images)
        latents = mu + torch.exp(0.5 * logvar) * noise
        return self.decode(latents), mu, logvar
