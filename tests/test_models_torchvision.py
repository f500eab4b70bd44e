"""Torchvision classifiers by name: never downloaded, features from the same pass, stable keys."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn as nn
import torchvision

from fastlrwa.errors import ConfigError
from fastlrwa.models import CLASSIFIER_NAMES, Classifier, build_model, registry


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_mobilenet_builds_without_weights_and_returns_the_final_linear_input(no_downloads: None) -> None:
    model = build_model("mobilenet_v3_small", 7, in_channels=1, image_size=32)
    assert isinstance(model, Classifier)
    x = torch.randn(3, 1, 32, 32)

    reference = torchvision.models.mobilenet_v3_small(weights=None, num_classes=7)
    reference.features[0][0] = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1, bias=False)
    documented = {key.removeprefix("model."): value for key, value in model.state_dict().items()}
    assert all(key.startswith("model.") for key in model.state_dict())
    reference.load_state_dict(documented)
    captured = {}
    reference.classifier[3].register_forward_hook(lambda module, inputs, output: captured.update(input=inputs[0]))
    model.eval()
    reference.eval()
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        expected = reference(x)
    assert logits.shape == (3, 7) and features.shape == (3, 1024) and model.feature_dim == 1024
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(features, captured["input"])
    assert model.head_weight_key == "model.classifier.3.weight" and model.stem_weight_key == "model.features.0.0.weight"


def test_train_mode_gradients_reach_the_head(no_downloads: None) -> None:
    model = build_model("mobilenet_v3_small", 5).train()
    logits, features = model(torch.randn(3, 3, 32, 32), return_features=True)
    logits.sum().backward()
    assert model.state_dict()["model.classifier.3.weight"].shape == (5, 1024)
    head = model.model.classifier[3]
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert features.requires_grad


def test_registered_names_win_over_torchvision() -> None:
    model = build_model("resnet18", 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert "resnet18" in CLASSIFIER_NAMES


def test_model_without_a_linear_head_is_refused() -> None:
    with pytest.raises(ConfigError, match="squeezenet1_1.*Linear"):
        build_model("squeezenet1_1", 10)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        build_model("resnet9000", 10)
    message = str(raised.value)
    assert "resnet9000" in message and "wrn40_2" in message and "torchvision" in message and "\n" not in message


def test_model_whose_linear_is_not_last_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def squashed_head(name: str, weights: None, num_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes), nn.Tanh()
        )

    monkeypatch.setattr(registry, "torchvision_classification_names", lambda: ["squashed"])
    monkeypatch.setattr(torchvision.models, "get_model", squashed_head)
    with pytest.raises(ConfigError, match="'squashed'.*not its final operation"):
        build_model("squashed", 4)
