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
    "augment": ("affine_warp", "random_affine", "random_crop_flip"),
    "catalog": ("DATASET_NAMES", "DatasetInfo", "dataset_info"),
    "device_set": ("DeviceImageSet",),
    "accuracy": ("EvalResult", "evaluate", "predict"),
    "load": ("load_split",),
    "split": ("ArraySplit", "CorruptDataError"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
