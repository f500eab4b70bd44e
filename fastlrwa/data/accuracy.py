"""Test accuracy of a classifier on a ``DeviceImageSet``, overall and per class, its agreement with another
model's predictions, and a model's predictions on the whole set."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

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
    # The fraction of test images on which the model's prediction equals the ``reference`` given to ``evaluate``.
    agreement: float | None = None


def _checked(model: torch.nn.Module, test_set: DeviceImageSet, batch_size: int) -> torch.nn.Parameter | None:
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size must be at least 1, got {batch_size}")
    if len(test_set) == 0:
        raise ConfigError(f"the {test_set.info.name} test set is empty; there is nothing to evaluate")
    param = next(model.parameters(), None)
    if param is not None and param.device != test_set.device:
        raise ConfigError(
            f"the model is on {param.device} but the test set is on {test_set.device}; move one to the other"
        )
    return param


@contextmanager
def inference(model: torch.nn.Module, device: torch.device, autocast_dtype: torch.dtype | None) -> Iterator[None]:
    """Eval mode under ``torch.inference_mode`` and autocast; every submodule's training flag restored after."""
    training_flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(), autocast_to(device.type, autocast_dtype):
            yield
    finally:
        for module, flag in training_flags:
            module.training = flag


def _predictions(
    model: torch.nn.Module, test_set: DeviceImageSet, batch_size: int, param: torch.nn.Parameter | None
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, predicted classes) of each batch of ``test_set``; call it under :func:`inference`."""
    for start in range(0, len(test_set), batch_size):
        rows = slice(start, start + batch_size)
        images = test_set.normalize(test_set.images[rows])
        if param is not None:
            images = images.to(param.dtype)
        yield rows, model(images).argmax(dim=1)


def predict(
    model: torch.nn.Module,
    test_set: DeviceImageSet,
    *,
    batch_size: int = 1024,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The class ``model`` predicts for every image of ``test_set`` (int64, on its device; no host read)."""
    param = _checked(model, test_set, batch_size)
    with inference(model, test_set.device, autocast_dtype):
        return torch.cat([predicted for _, predicted in _predictions(model, test_set, batch_size, param)])


def evaluate(
    model: torch.nn.Module,
    test_set: DeviceImageSet,
    *,
    batch_size: int = 1024,
    autocast_dtype: torch.dtype | None = None,
    reference: torch.Tensor | None = None,
) -> EvalResult:
    """Top-1 accuracy of ``model(x)`` (logits) on every image of ``test_set``.

    Runs in eval mode under ``torch.inference_mode`` (and autocast to ``autocast_dtype`` if
    given), then restores every submodule's training flag. Counts stay on the device until one
    read-back at the end. ``reference``: another model's predictions on the set (from :func:`predict`),
    whose agreement with this model's goes into ``EvalResult.agreement``.
    """
    param = _checked(model, test_set, batch_size)
    num_classes = test_set.info.num_classes
    device = test_set.device
    with inference(model, device, autocast_dtype):
        correct_per_class = torch.zeros(num_classes, dtype=torch.int64, device=device)
        total_per_class = torch.zeros(num_classes, dtype=torch.int64, device=device)
        agreeing = torch.zeros(num_classes, dtype=torch.int64, device=device)
        for rows, predicted in _predictions(model, test_set, batch_size, param):
            labels = test_set.labels[rows]
            correct_per_class.index_add_(0, labels, (predicted == labels).to(torch.int64))
            total_per_class.index_add_(0, labels, torch.ones_like(labels))
            if reference is not None:
                agreeing.index_add_(0, labels, (predicted == reference[rows]).to(torch.int64))
        counts = torch.stack((correct_per_class, total_per_class, agreeing)).cpu()

    correct_list, total_list, agreeing_list = counts.tolist()
    correct, total = sum(correct_list), sum(total_list)
    return EvalResult(
        accuracy=100.0 * correct / total,
        per_class=[100.0 * c / t if t else 0.0 for c, t in zip(correct_list, total_list)],
        correct=correct,
        total=total,
        per_class_total=total_list,
        agreement=sum(agreeing_list) / total if reference is not None else None,
    )
