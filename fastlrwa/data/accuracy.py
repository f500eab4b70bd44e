"""Test accuracy of a classifier on a ``DeviceImageSet``, overall and per class."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastlrwa.data.device_set import DeviceImageSet
from fastlrwa.errors import ConfigError
from fastlrwa.runtime import autocast_to


@dataclass
class EvalResult:
    """Accuracies in percent.

    ``per_class[c]`` is the accuracy on the test images labelled ``c``; a class with no test
    images (``per_class_total[c] == 0``) is reported as 0.0, never NaN, so the list can be
    averaged and serialised as it is; ``per_class_total`` (test images per class, filled by
    ``evaluate``) tells such classes apart.
    """

    accuracy: float
    per_class: list[float]
    correct: int
    total: int
    per_class_total: list[int] = field(default_factory=list)


def evaluate(
    model: torch.nn.Module,
    test_set: DeviceImageSet,
    *,
    batch_size: int = 1024,
    autocast_dtype: torch.dtype | None = None,
) -> EvalResult:
    """Top-1 accuracy of ``model(x)`` (logits) on every image of ``test_set``.

    Runs in eval mode under ``torch.inference_mode`` (and autocast to ``autocast_dtype`` if
    given), then restores every submodule's training flag. Counts stay on the device until one
    read-back at the end.
    """
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size must be at least 1, got {batch_size}")
    if len(test_set) == 0:
        raise ConfigError(f"the {test_set.info.name} test set is empty; there is nothing to evaluate")
    param = next(model.parameters(), None)
    if param is not None and param.device != test_set.device:
        raise ConfigError(
            f"the model is on {param.device} but the test set is on {test_set.device}; move one to the other"
        )

    num_classes = test_set.info.num_classes
    device = test_set.device
    training_flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(), autocast_to(device.type, autocast_dtype):
            correct_per_class = torch.zeros(num_classes, dtype=torch.int64, device=device)
            total_per_class = torch.zeros(num_classes, dtype=torch.int64, device=device)
            for start in range(0, len(test_set), batch_size):
                images = test_set.normalize(test_set.images[start:start + batch_size])
                if param is not None:
                    images = images.to(param.dtype)
                labels = test_set.labels[start:start + batch_size]
                hits = (model(images).argmax(dim=1) == labels).to(torch.int64)
                correct_per_class.index_add_(0, labels, hits)
                total_per_class.index_add_(0, labels, torch.ones_like(labels))
            counts = torch.stack((correct_per_class, total_per_class)).cpu()
    finally:
        for module, flag in training_flags:
            module.training = flag

    correct_list, total_list = counts.tolist()
    correct, total = sum(correct_list), sum(total_list)
    return EvalResult(
        accuracy=100.0 * correct / total,
        per_class=[100.0 * c / t if t else 0.0 for c, t in zip(correct_list, total_list)],
        correct=correct,
        total=total,
        per_class_total=total_list,
    )
