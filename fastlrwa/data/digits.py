"""scikit-learn's 8x8 ``digits`` (1797 images, shipped with sklearn), made to look like MNIST.

Split: ``train_test_split(test_size=360, random_state=0, stratify=labels)``, i.e. 1437 training
and 360 test images, the same on every machine. Pixels (0..16) are scaled by 255/16, resized to
32x32 with bilinear interpolation (no antialiasing: this is an upsampling) and rounded to uint8,
so LeNet-5 takes the images like MNIST's.
"""

from __future__ import annotations

import torch

from fastlrwa.data.catalog import dataset_info
from fastlrwa.data.resize import resize_to_uint8
from fastlrwa.data.source import Split
from fastlrwa.data.split import ArraySplit, checked_split

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
_MAX_PIXEL = 16.0


def load_digits_split(split: Split) -> ArraySplit:
    """The ``train`` (1437) or ``test`` (360) part of sklearn's digits at 32x32."""
    # Imported here: scikit-learn takes seconds to import, and only this loader needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_images, test_images, train_labels, test_labels = train_test_split(
        digits.images,
        digits.target,
        test_size=DIGITS_TEST_SIZE,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    images, labels = (train_images, train_labels) if split == "train" else (test_images, test_labels)
    info = dataset_info("digits")
    pixels = torch.from_numpy(images).unsqueeze(1) * (255.0 / _MAX_PIXEL)
    return checked_split(resize_to_uint8(pixels, info.image_size), torch.from_numpy(labels), info, "sklearn digits")
