"""DeviceImageSet: normalisation against the formula, batches gathered by device indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlrwa.data import ArraySplit, DeviceImageSet, dataset_info


def _random_split(name: str, n: int) -> ArraySplit:
    info = dataset_info(name)
    size = info.image_size
    images = torch.randint(0, 256, (n, info.channels, size, size), dtype=torch.uint8)
    return ArraySplit(images=images, labels=torch.randint(0, info.num_classes, (n,)), info=info)


def _formula(info, images_u8: np.ndarray) -> np.ndarray:
    """(x / 255 - mean) / std in float64, written out."""
    mean = np.array(info.mean).reshape(1, -1, 1, 1)
    std = np.array(info.std).reshape(1, -1, 1, 1)
    return (images_u8.astype(np.float64) / 255.0 - mean) / std


@pytest.mark.parametrize("name", ["cifar100", "fashion-mnist"])
def test_normalize_matches_the_formula(name):
    split = _random_split(name, 13)
    device_set = DeviceImageSet(split, "cpu")
    assert device_set.mean.shape == device_set.std.shape == (1, split.info.channels, 1, 1)
    assert device_set.mean.dtype == device_set.std.dtype == torch.float32
    out = device_set.normalize(split.images)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _formula(split.info, split.images.numpy()), rtol=1e-6, atol=1e-6)


def test_normalize_rejects_float_input():
    device_set = DeviceImageSet(_random_split("svhn", 3), "cpu")
    with pytest.raises(TypeError, match="uint8"):
        device_set.normalize(torch.rand(2, 3, 32, 32))


def test_batch_gathers_images_and_labels_at_the_index():
    split = _random_split("cifar10", 37)
    device_set = DeviceImageSet(split, torch.device("cpu"))
    assert len(device_set) == 37
    index = torch.randint(0, 37, (19,))
    images, labels = device_set.batch(index)
    picked = index.numpy()
    np.testing.assert_array_equal(labels.numpy(), split.labels.numpy()[picked])
    np.testing.assert_allclose(images.numpy(), _formula(split.info, split.images.numpy()[picked]), rtol=1e-6, atol=1e-6)
