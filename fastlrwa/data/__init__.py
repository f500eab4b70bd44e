"""Datasets read from their standard on-disk formats, held as uint8 tensors.

``load_split`` reads a split into host memory (uint8 images at the model's input size),
``DeviceImageSet`` keeps it on the training device and normalises batches on the fly,
``random_crop_flip`` augments a batch on the device and ``evaluate`` measures test accuracy.
"""

from fastlrwa.data.augment import random_crop_flip
from fastlrwa.data.catalog import DATASET_NAMES, DatasetInfo, dataset_info
from fastlrwa.data.device_set import DeviceImageSet
from fastlrwa.data.evaluate import EvalResult, evaluate
from fastlrwa.data.load import load_split
from fastlrwa.data.split import ArraySplit, CorruptDataError

__all__ = [
    "DATASET_NAMES",
    "ArraySplit",
    "CorruptDataError",
    "DatasetInfo",
    "DeviceImageSet",
    "EvalResult",
    "dataset_info",
    "evaluate",
    "load_split",
    "random_crop_flip",
]
