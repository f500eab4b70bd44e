"""scikit-learn digits: the fixed stratified split, the 32x32 resize and the hard-coded statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastlrwa.data import dataset_info, load_split


@pytest.fixture(scope="module")
def splits():
    return {split: load_split("digits", split) for split in ("train", "test")}


def test_split_sizes_shapes_and_dtypes(splits):
    assert len(splits["train"].labels) == 1437 and len(splits["test"].labels) == 360
    for loaded in splits.values():
        assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
        assert loaded.images.shape[1:] == (1, 32, 32)
        assert loaded.info == dataset_info("digits")


def test_split_is_stratified(splits):
    everything = load_digits().target
    test_counts = np.bincount(splits["test"].labels.numpy(), minlength=10)
    proportional = 360 * np.bincount(everything, minlength=10) / len(everything)
    assert np.all(np.abs(test_counts - proportional) < 1)
    train_counts = np.bincount(splits["train"].labels.numpy(), minlength=10)
    np.testing.assert_array_equal(train_counts + test_counts, np.bincount(everything, minlength=10))


def test_split_is_deterministic(splits):
    again = load_split("digits", "test")
    assert torch.equal(again.images, splits["test"].images)
    assert torch.equal(again.labels, splits["test"].labels)


def test_images_are_the_sklearn_images_scaled_and_resized(splits):
    digits = load_digits()
    _, test_index = train_test_split(
        np.arange(len(digits.target)), test_size=360, random_state=0, stratify=digits.target
    )
    np.testing.assert_array_equal(splits["test"].labels.numpy(), digits.target[test_index])
    # Independent reference: PIL's bilinear resize of the 0..255 float image.
    reference = np.stack(
        [
            np.asarray(Image.fromarray((img * 255 / 16).astype(np.float32), mode="F").resize((32, 32), Image.BILINEAR))
            for img in digits.images[test_index]
        ]
    )
    assert np.abs(splits["test"].images[:, 0].numpy() - reference).max() <= 0.5 + 1e-4


def test_hard_coded_statistics_match_the_training_split(splits):
    pixels = splits["train"].images.numpy().astype(np.float64) / 255.0
    info = dataset_info("digits")
    assert info.mean == (round(float(pixels.mean()), 4),)
    assert info.std == (round(float(np.sqrt(((pixels - pixels.mean()) ** 2).mean())), 4),)
