"""Datasets read from their standard on-disk formats, held as uint8 tensors.

``load_split`` reads a split into host memory (uint8 images at the model's input size),
``DeviceImageSet`` keeps it on the training device and normalises batches on the fly,
``random_crop_flip`` augments a batch of real images on the device, ``random_affine`` and ``affine_warp``
shift, rotate and flip a synthetic one, and ``evaluate`` measures test accuracy
(``predict``: a model's predicted classes on a whole set).
The names below are imported on first use (``fastlrwa.lazy``): ``catalog`` is torch-free.
"""

from fastlrwa.lazy import lazy_exports

_EXPORTS = {
    "affine_warp": "fastlrwa.data.augment",
    "random_affine": "fastlrwa.data.augment",
    "random_crop_flip": "fastlrwa.data.augment",
    "DATASET_NAMES": "fastlrwa.data.catalog",
    "DatasetInfo": "fastlrwa.data.catalog",
    "dataset_info": "fastlrwa.data.catalog",
    "DeviceImageSet": "fastlrwa.data.device_set",
    "EvalResult": "fastlrwa.data.accuracy",
    "evaluate": "fastlrwa.data.accuracy",
    "predict": "fastlrwa.data.accuracy",
    "load_split": "fastlrwa.data.load",
    "ArraySplit": "fastlrwa.data.split",
    "CorruptDataError": "fastlrwa.data.split",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
