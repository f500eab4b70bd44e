"""``build_model``: a classifier by name, from the registered architectures or torchvision."""

from __future__ import annotations

from typing import Callable

from fastlrwa.errors import ConfigError
from fastlrwa.models.classifier import Classifier
from fastlrwa.models.lenet import LENET_IMAGE_SIZE, lenet5, lenet5_half
from fastlrwa.models.names import CLASSIFIER_NAMES
from fastlrwa.models.resnet_cifar import resnet18, resnet34
from fastlrwa.models.torchvision_classifier import TorchvisionClassifier, torchvision_classification_names
from fastlrwa.models.wide_resnet import wrn16_1, wrn16_2, wrn40_2

REGISTERED_BUILDERS: dict[str, Callable[[int, int], Classifier]] = {
    "lenet5": lenet5,
    "lenet5_half": lenet5_half,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "wrn16_1": wrn16_1,
    "wrn16_2": wrn16_2,
    "wrn40_2": wrn40_2,
}
FIXED_IMAGE_SIZES = {"lenet5": LENET_IMAGE_SIZE, "lenet5_half": LENET_IMAGE_SIZE}


def build_model(arch: str, num_classes: int, *, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """Build a freshly initialised classifier.

    Registered names (``CLASSIFIER_NAMES``) come first, so ``resnet18``/``resnet34`` are the CIFAR-style
    networks; any other name is looked up among torchvision's classification models and built with
    ``weights=None``. Every result follows the ``Classifier`` contract (``forward(x, return_features)``).
    Raises ``ConfigError`` for an unknown name or sizes the architecture cannot take.
    """
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    if arch in REGISTERED_BUILDERS:
        required_size = FIXED_IMAGE_SIZES.get(arch)
        if required_size is not None and image_size != required_size:
            raise ConfigError(
                f"{arch} takes {required_size}x{required_size} images, not {image_size}x{image_size}; "
                f"use a {required_size}x{required_size} dataset or another --arch"
            )
        return REGISTERED_BUILDERS[arch](num_classes, in_channels)
    if arch in torchvision_classification_names():
        return TorchvisionClassifier(arch, num_classes, in_channels, image_size)
    raise ConfigError(
        f"unknown architecture {arch!r}; use one of {', '.join(CLASSIFIER_NAMES)} "
        "or the name of any torchvision classification model (e.g. mobilenet_v3_small, resnet50)"
    )
