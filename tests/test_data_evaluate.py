"""evaluate(): accuracy and per-class accuracy against a hand computation; modes restored."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastlrwa.data import ArraySplit, DeviceImageSet, dataset_info, evaluate
from fastlrwa.errors import ConfigError

N, C, H, W, CLASSES = 203, 3, 5, 7, 7


class _Float64Linear(torch.nn.Module):
    """A random linear classifier evaluated in float64, so the reference's argmax has no ties to break."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(C * H * W, CLASSES, dtype=torch.float64)
        self.seen_modes: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_modes.append((self.training, torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
        return self.linear(x.flatten(1).to(torch.float64))


def _test_set(labels: np.ndarray) -> tuple[DeviceImageSet, np.ndarray]:
    info = dataclasses.replace(dataset_info("cifar10"), num_classes=CLASSES)
    images = torch.randint(0, 256, (len(labels), C, H, W), dtype=torch.uint8)
    return DeviceImageSet(ArraySplit(images, torch.from_numpy(labels), info), "cpu"), images.numpy()


def _reference(model: _Float64Linear, images: np.ndarray, labels: np.ndarray) -> tuple[float, list[float], list[int]]:
    mean = np.array(dataset_info("cifar10").mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(dataset_info("cifar10").std, dtype=np.float32).reshape(1, -1, 1, 1)
    x = ((images.astype(np.float32) / np.float32(255) - mean) / std).reshape(len(images), -1).astype(np.float64)
    weight = model.linear.weight.detach().numpy()
    bias = model.linear.bias.detach().numpy()
    predictions = [int(np.argmax(weight @ row + bias)) for row in x]
    hits = [int(p == y) for p, y in zip(predictions, labels)]
    totals = [sum(1 for y in labels if y == c) for c in range(CLASSES)]
    per_class = [
        100.0 * sum(h for h, y in zip(hits, labels) if y == c) / totals[c] if totals[c] else 0.0 for c in range(CLASSES)
    ]
    return 100.0 * sum(hits) / len(hits), per_class, totals


@pytest.mark.parametrize("batch_size", [1, 17, 64, 1024])
def test_matches_hand_computation(batch_size):
    rng = np.random.default_rng()
    labels = rng.choice([0, 1, 2, 4, 5, 6], size=N)  # class 3 has no test images
    test_set, images = _test_set(labels)
    model = _Float64Linear()
    result = evaluate(model, test_set, batch_size=batch_size)
    accuracy, per_class, totals = _reference(model, images, labels)
    assert result.total == N
    assert result.correct == round(accuracy * N / 100)
    assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert result.per_class == pytest.approx(per_class, abs=1e-12)
    assert result.per_class_total == totals
    assert result.per_class[3] == 0.0 and result.per_class_total[3] == 0


def test_runs_in_eval_and_inference_mode_and_restores_every_flag():
    test_set, _ = _test_set(np.random.default_rng().integers(0, CLASSES, N))
    model = torch.nn.Sequential(_Float64Linear(), torch.nn.Dropout(0.5))
    model.train()
    model[1].eval()
    evaluate(model, test_set, batch_size=100)
    assert model[0].seen_modes == [(False, True, False)] * 3
    assert model.training and model[0].training and not model[1].training


def test_autocast_dtype_turns_autocast_on():
    test_set, _ = _test_set(np.random.default_rng().integers(0, CLASSES, 11))
    model = _Float64Linear()
    result = evaluate(model, test_set, autocast_dtype=torch.bfloat16)
    assert model.seen_modes == [(False, True, True)]
    assert result.total == 11


def test_model_on_another_device_is_a_config_error():
    test_set, _ = _test_set(np.random.default_rng().integers(0, CLASSES, 5))
    with pytest.raises(ConfigError, match="move one to the other"):
        evaluate(_Float64Linear().to("meta"), test_set)


def test_bad_batch_size_is_a_config_error():
    test_set, _ = _test_set(np.random.default_rng().integers(0, CLASSES, 5))
    with pytest.raises(ConfigError, match="at least 1"):
        evaluate(_Float64Linear(), test_set, batch_size=0)
