"""random_crop_flip: identity without padding or flip, flips are mirrors, crops are padded windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlrwa.data import random_crop_flip
from fastlrwa.errors import ConfigError


def _random_batch(dtype: torch.dtype, shape=(9, 2, 7, 5)) -> torch.Tensor:
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=torch.uint8)
    return torch.randn(shape, dtype=dtype)


def _windows(image: np.ndarray, padding: int) -> list[tuple[int, int, np.ndarray]]:
    """Every H x W window of the zero-padded ``image`` [C, H, W], with its offset."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    return [
        (dy, dx, padded[:, dy : dy + h, dx : dx + w]) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
    ]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_no_padding_no_flip_is_identity(dtype):
    images = _random_batch(dtype)
    out = random_crop_flip(images, padding=0, flip=False)
    assert out.dtype == dtype and out.shape == images.shape
    assert torch.equal(out, images)


def test_flip_only_mirrors_some_images_and_keeps_the_others():
    images = _random_batch(torch.float32, (64, 3, 6, 5))
    out = random_crop_flip(images, padding=0, flip=True)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0 < int(mirrored.sum()) < 64  # all-or-nothing has probability 2**-63


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_every_output_is_a_window_of_the_zero_padded_input(dtype, flip):
    padding = 3
    images = _random_batch(dtype, (11, 2, 7, 5))
    out = random_crop_flip(images, padding=padding, flip=flip).numpy()
    for image, result in zip(images.numpy(), out):
        candidates = [window for _, _, window in _windows(image, padding)]
        if flip:
            candidates += [window[:, :, ::-1] for window in candidates]
        assert any(np.array_equal(result, window) for window in candidates)


def test_all_offsets_occur():
    padding = 1
    images = _random_batch(torch.float64, (400, 1, 4, 6))
    out = random_crop_flip(images, padding=padding, flip=False).numpy()
    offsets = set()
    for image, result in zip(images.numpy(), out):
        offsets.update((dy, dx) for dy, dx, window in _windows(image, padding) if np.array_equal(result, window))
    assert offsets == {(dy, dx) for dy in range(3) for dx in range(3)}


def test_generator_makes_it_reproducible():
    images = _random_batch(torch.uint8)
    seed = int(torch.randint(0, 2**31, ()).item())
    first = random_crop_flip(images, padding=4, flip=True, rng=torch.Generator().manual_seed(seed))
    second = random_crop_flip(images, padding=4, flip=True, rng=torch.Generator().manual_seed(seed))
    assert torch.equal(first, second)


@pytest.mark.parametrize(("shape", "padding"), [((3, 32, 32), 4), ((2, 3, 8, 8), -1)])
def test_bad_arguments_are_config_errors(shape, padding):
    with pytest.raises(ConfigError):
        random_crop_flip(torch.rand(shape), padding=padding, flip=False)
