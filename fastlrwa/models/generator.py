"""The paper's generator G(z): latent vector to an image in the teacher's normalised input space."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.errors import ConfigError
from fastlrwa.models.batchnorm import train_batchnorm_per_chunk
from fastlrwa.models.spectral_norm import spectral_norm, spectral_sigma, unnormalised_weight
from fastlrwa.runtime import at_least_float32, autocast_to

BASE_CHANNELS = 128
# eps=0.8 in the two inner BatchNorms is the authors' setting (inherited from DAFL), not a typo for 1e-5.
INNER_BN_EPS = 0.8
LEAKY_SLOPE = 0.2
# The authors initialise every Conv2d and Linear weight uniformly in [-0.08, 0.08], biases zero.
INIT_BOUND = 0.08


class PixelRange(nn.Module):
    """tanh's output in [-1, 1] taken as pixels ``p = (t + 1) / 2`` in [0, 1], in the dataset's normalisation
    ``(p - mean) / std`` per channel: the generator's images then stay inside the values a real image can take."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        # Fixed by the dataset, not learnt or saved: the run's config names the dataset.
        self.register_buffer("scale", 0.5 / std_t, persistent=False)
        self.register_buffer("shift", (0.5 - mean_t) / std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


class Generator(nn.Module):
    """Linear(latent -> W*(s/4)^2) -> (W, s/4, s/4) -> BN -> up x2 -> SN conv3x3 W -> BN(eps 0.8)
    -> LeakyReLU(0.2) -> up x2 -> SN conv3x3 W/2 -> BN(eps 0.8) -> LeakyReLU(0.2) -> SN conv3x3 to
    ``channels`` -> tanh -> BN without affine; W = ``width``, 128 in the paper. SN: spectral norm.
    With ``pixel_norm = (mean, std)`` the last BatchNorm is :class:`PixelRange` instead (the
    ``pixels`` output: images inside the real pixel range, not standardised per batch).

    This is the authors' generator (their ``networks/generator.py``): spectral norm on all three
    convolutions, computed as their ``torch.nn.utils.spectral_norm`` does (see
    :mod:`fastlrwa.models.spectral_norm`), every Conv2d and Linear weight drawn from U(-0.08, 0.08)
    with zero biases. Its cost grows with W^2 and dwarfs a LeNet student's, so the CPU presets use
    a narrower W.

    The last BatchNorm standardises every channel, which puts the images in the (normalised) range the
    teacher was trained on. A spectral-normed weight appears in the state_dict as
    ``...parametrizations.weight.original`` plus the power-iteration buffers ``_u`` and ``_v``
    (updated in train mode, like BatchNorm statistics).
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = BASE_CHANNELS,
        pixel_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        self.latent_dim = latent_dim
        self.channels = channels
        self.image_size = image_size
        self.base_size = image_size // 4
        self.project = _uniform_init(nn.Linear(latent_dim, width * self.base_size**2))
        self.project_norm = nn.BatchNorm2d(width)
        self.decode = nn.Sequential(
            nn.Upsample(scale_factor=2),
            _conv(width, width),
            nn.BatchNorm2d(width, eps=INNER_BN_EPS),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Upsample(scale_factor=2),
            _conv(width, width // 2),
            nn.BatchNorm2d(width // 2, eps=INNER_BN_EPS),
            nn.LeakyReLU(LEAKY_SLOPE),
            _conv(width // 2, channels),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False) if pixel_norm is None else PixelRange(*pixel_norm),
        )
        # A dtype the generator computes in on its own (autocast), whatever the rest of the run does; None: the
        # run's precision. Its images then come back in float32, so the classifiers see them at full precision.
        self.compute_dtype: torch.dtype | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latent ``[N, latent_dim]`` to images ``[N, channels, image_size, image_size]``."""
        if self.compute_dtype is None:
            return self._decode(z)
        with autocast_to(z.device.type, self.compute_dtype):
            images = self._decode(z)
        return at_least_float32(images)

    def forward_chunks(self, z: torch.Tensor, chunks: int) -> torch.Tensor:
        """``chunks`` train-mode forwards of the equal row blocks of ``z`` in turn, run as one batch, without gradient.

        Equal, to rounding, to ``torch.cat([self(block) for block in z.chunk(chunks)])``: each block is
        normalised with its own batch statistics and takes its own power-iteration step, and the running
        statistics and spectral-norm vectors move as that many forwards move them; the convolutions see the
        whole batch. σ of each block divides the convolution's input instead of its weight (nearest
        upsampling and LeakyReLU commute with a positive factor), folded into the BatchNorm before it, so no
        pass over the activations is added. In eval mode it is ``self(z)``.
        """
        if not self.training:
            with torch.no_grad():
                return self(z)
        with torch.no_grad(), autocast_to(z.device.type, self.compute_dtype):
            images = self._decode_chunks(z, chunks)
        return images if self.compute_dtype is None else at_least_float32(images)

    def _decode_chunks(self, z: torch.Tensor, chunks: int) -> torch.Tensor:
        upsample1, conv1, norm1, act1, upsample2, conv2, norm2, act2, conv3, tanh, norm3 = self.decode
        # The power-iteration steps the blocks' forwards would take, in order, layer by layer (each layer has its
        # own vectors, so the order across layers does not matter).
        inverse_sigmas = [[1 / spectral_sigma(conv) for _ in range(chunks)] for conv in (conv1, conv2, conv3)]
        x = self.project(z).unflatten(1, (self.width, self.base_size, self.base_size))
        x = x.contiguous(memory_format=torch.channels_last)
        x = train_batchnorm_per_chunk(x, self.project_norm, chunks, inverse_sigmas[0])
        x = F.conv2d(upsample1(x), unnormalised_weight(conv1), conv1.bias, padding=conv1.padding)
        x = act1(train_batchnorm_per_chunk(x, norm1, chunks, inverse_sigmas[1]))
        x = F.conv2d(upsample2(x), unnormalised_weight(conv2), conv2.bias, padding=conv2.padding)
        x = act2(train_batchnorm_per_chunk(x, norm2, chunks, inverse_sigmas[2]))
        x = tanh(F.conv2d(x, unnormalised_weight(conv3), conv3.bias, padding=conv3.padding))
        return norm3(x) if isinstance(norm3, PixelRange) else train_batchnorm_per_chunk(x, norm3, chunks)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).unflatten(1, (self.width, self.base_size, self.base_size))
        # channels_last from the first feature map on: oneDNN's convolutions run in it without reordering
        # their input at each layer (the eager width-32 generator step took 1.4x as long in NCHW on a 2-core Xeon).
        return self.decode(self.project_norm(x.contiguous(memory_format=torch.channels_last)))


def _uniform_init(layer: nn.Conv2d | nn.Linear) -> nn.Conv2d | nn.Linear:
    nn.init.uniform_(layer.weight, -INIT_BOUND, INIT_BOUND)
    nn.init.zeros_(layer.bias)
    return layer


def _conv(in_channels: int, out_channels: int) -> nn.Module:
    """A spectral-normed 3x3 convolution, initialised before the norm is attached (as the authors' in-place
    init of ``weight``, which shares its storage with ``weight_orig``, amounts to)."""
    return spectral_norm(_uniform_init(nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)))


def build_generator(
    *,
    latent_dim: int,
    channels: int,
    image_size: int,
    width: int = BASE_CHANNELS,
    pixel_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Generator:
    """The paper's generator; ``image_size`` must be a multiple of 4 (two x2 upsamplings). ``pixel_norm``:
    the dataset's per-channel (mean, std) for the ``pixels`` output, None for the paper's standardised one."""
    for label, value in (
        ("latent_dim", latent_dim),
        ("channels", channels),
        ("image_size", image_size),
        ("width", width),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"generator {label} must be a positive integer, got {value!r}")
    if image_size % 4 != 0:
        raise ConfigError(f"generator image_size must be a multiple of 4, got {image_size}; use 32 or 64")
    if width < 2:
        raise ConfigError(f"generator width must be at least 2 (its second conv has width/2 channels), got {width}")
    if pixel_norm is not None and not (len(pixel_norm[0]) == len(pixel_norm[1]) == channels):
        raise ConfigError(f"generator pixel_norm needs a mean and a std for each of the {channels} channels")
    return Generator(latent_dim, channels, image_size, width, pixel_norm)
