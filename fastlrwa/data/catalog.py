"""What each supported dataset is: classes, channels, model input size, normalisation, augmentation.

Nothing here touches the disk. The statistics are the standard published per-channel means and
standard deviations (pixel values in [0, 1]) of each training split, except ``digits`` whose
values were computed by us (see ``_DIGITS_MEAN``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastlrwa.errors import ConfigError

DATASET_NAMES: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "tiny-imagenet",
)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as the models see it.

    ``augment`` says whether a random crop after zero padding of 4 is the standard training
    augmentation; ``flip`` whether a random horizontal flip goes with it. SVHN is cropped but not
    flipped: mirrored house numbers are not digits.

    ``class_names`` is empty for ``tiny-imagenet``: its names live in the data folder
    (``wnids.txt``, ``words.txt``) and the ``ArraySplit`` that ``load_split`` returns carries them.
    """

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    augment: bool
    flip: bool = False


_DIGIT_NAMES = tuple(str(d) for d in range(10))

_FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# The fine label names in the order of CIFAR-100's ``meta`` file (alphabetical).
_CIFAR100_NAMES = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)

# Computed once from the 1437-image training split of ``load_split("digits", "train")`` (uint8,
# 32x32): mean and population standard deviation of all pixels divided by 255, to 4 decimals.
# tests/test_data_digits.py recomputes them.
_DIGITS_MEAN = 0.3054
_DIGITS_STD = 0.3237

_CATALOG: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", 10, 1, 32, (_DIGITS_MEAN,), (_DIGITS_STD,), _DIGIT_NAMES, augment=False),
        DatasetInfo("mnist", 10, 1, 32, (0.1307,), (0.3081,), _DIGIT_NAMES, augment=False),
        DatasetInfo("fashion-mnist", 10, 1, 32, (0.2860,), (0.3530,), _FASHION_NAMES, augment=False),
        DatasetInfo(
            "cifar10",
            10,
            3,
            32,
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            _CIFAR10_NAMES,
            augment=True,
            flip=True,
        ),
        DatasetInfo(
            "cifar100",
            100,
            3,
            32,
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            _CIFAR100_NAMES,
            augment=True,
            flip=True,
        ),
        DatasetInfo(
            "svhn",
            10,
            3,
            32,
            (0.4377, 0.4438, 0.4728),
            (0.1980, 0.2010, 0.1970),
            _DIGIT_NAMES,
            augment=True,
            flip=False,
        ),
        DatasetInfo(
            "tiny-imagenet",
            200,
            3,
            64,
            (0.4802, 0.4481, 0.3975),
            (0.2770, 0.2691, 0.2821),
            (),
            augment=True,
            flip=True,
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The static description of dataset ``name``; raises ConfigError for an unknown name."""
    try:
        return _CATALOG[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}") from None
