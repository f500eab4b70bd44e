"""The dataset catalog: one consistent description per name, unknown names rejected."""

from __future__ import annotations

import pytest

from fastlrwa.data import DATASET_NAMES, dataset_info, load_split
from fastlrwa.errors import ConfigError

EXPECTED_SHAPES = {
    "digits": (10, 1, 32),
    "mnist": (10, 1, 32),
    "fashion-mnist": (10, 1, 32),
    "cifar10": (10, 3, 32),
    "cifar100": (100, 3, 32),
    "svhn": (10, 3, 32),
    "tiny-imagenet": (200, 3, 64),
}


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_info_is_consistent(name):
    info = dataset_info(name)
    assert info.name == name
    assert (info.num_classes, info.channels, info.image_size) == EXPECTED_SHAPES[name]
    assert len(info.mean) == len(info.std) == info.channels
    assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    if name == "tiny-imagenet":
        assert info.class_names == ()  # read from words.txt by load_split
    else:
        assert len(info.class_names) == len(set(info.class_names)) == info.num_classes
    assert info.augment == (name in ("cifar10", "cifar100", "svhn", "tiny-imagenet"))
    assert info.flip == (name in ("cifar10", "cifar100", "tiny-imagenet"))


def test_catalog_covers_exactly_the_listed_names():
    assert set(EXPECTED_SHAPES) == set(DATASET_NAMES)


@pytest.mark.parametrize("bad", ["cifar", "CIFAR10", "imagenet", ""])
def test_unknown_name_lists_the_valid_ones(bad):
    with pytest.raises(ConfigError) as caught:
        dataset_info(bad)
    message = str(caught.value)
    assert "\n" not in message and repr(bad) in message
    assert all(name in message for name in DATASET_NAMES)
    with pytest.raises(ConfigError):
        load_split(bad, "train")


def test_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        load_split("digits", "val")
