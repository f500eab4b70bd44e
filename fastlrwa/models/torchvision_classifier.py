"""Any torchvision classification model, by name, as a ``Classifier`` that also returns its features.

The model is built with ``weights=None`` (nothing is ever downloaded), with ``num_classes`` passed to
its builder and its first convolution rebuilt for ``in_channels`` when that differs.

To return the input of the final Linear from the same forward pass, that Linear is replaced in place
by a ``DeferredLinear``: it keeps the Linear's ``weight`` and ``bias`` at the Linear's own path but
passes its input through, and ``TorchvisionClassifier.classify`` applies them. The wrapped model is
held as ``model``, so the state_dict keys are exactly torchvision's keys prefixed by ``model.`` (for
example ``model.conv1.weight`` ... ``model.fc.weight`` for ``resnet50``); a state_dict saved from a
plain torchvision model is accepted too (``canonical_state_dict`` adds the prefix).

At build time the wrapper runs both the untouched and the rewired model once in eval mode on a random
batch and requires identical logits; a model whose final Linear is not its last operation (or that
cannot take ``in_channels x image_size x image_size`` inputs) is refused with a ``ConfigError``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.errors import ConfigError
from fastlrwa.models.classifier import Classifier

WRAPPED_PREFIX = "model."
# Auxiliary classifiers make these return a tuple in train mode; the main head is all we use.
BUILDER_OPTIONS: dict[str, dict[str, bool]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def torchvision_classification_names() -> list[str]:
    """Names of the classification models torchvision registers (``torchvision.models.list_models``)."""
    import torchvision  # here, not at the top: seconds to import, and only non-registered names need it

    return torchvision.models.list_models(module=torchvision.models)


class DeferredLinear(nn.Module):
    """Holds a Linear's parameters where the Linear was, but returns its input unchanged.

    The owning ``TorchvisionClassifier`` applies the weights itself so it can keep the input as features.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TorchvisionClassifier(Classifier):
    """A torchvision classification model whose final Linear is applied by ``classify``."""

    def __init__(self, name: str, num_classes: int, in_channels: int, image_size: int) -> None:
        import torchvision

        model = torchvision.models.get_model(
            name, weights=None, num_classes=num_classes, **BUILDER_OPTIONS.get(name, {})
        )
        stem_path = _first_module_path(model, nn.Conv2d, name)
        if in_channels != model.get_submodule(stem_path).in_channels:
            model.set_submodule(stem_path, _with_in_channels(model.get_submodule(stem_path), in_channels, name))
        head_path = _last_module_path(model, nn.Linear, name)
        head = model.get_submodule(head_path)
        super().__init__(name, num_classes, in_channels, feature_dim=head.in_features)
        self.stem_weight_key = f"{WRAPPED_PREFIX}{stem_path}.weight"
        self.head_weight_key = f"{WRAPPED_PREFIX}{head_path}.weight"
        probe = torch.randn(2, in_channels, image_size, image_size)
        reference = _eval_logits(model, probe, name, in_channels, image_size)
        model.set_submodule(head_path, DeferredLinear(head))
        self.model = model
        # A path, not a second reference: registering the module twice would duplicate its state_dict keys.
        self.head_path = head_path
        rewired = _eval_logits(self, probe, name, in_channels, image_size)
        # Tolerance relative to the logits' scale: freshly initialised heads can give logits near 1e-10.
        tolerance = 1e-5 * reference.abs().max().item()
        if rewired.shape != reference.shape or not torch.allclose(rewired, reference, rtol=1e-4, atol=tolerance):
            raise ConfigError(
                f"torchvision model {name!r}: its last Linear layer ({head_path}) is not its final operation, so its "
                "features cannot be taken; pick another --arch"
            )

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        head = self.model.get_submodule(self.head_path)
        return F.linear(features, head.weight, head.bias)

    def canonical_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Prefix the keys with ``model.`` when the state_dict came from a plain torchvision model."""
        if any(key.startswith(WRAPPED_PREFIX) for key in state_dict):
            return state_dict
        return {WRAPPED_PREFIX + key: value for key, value in state_dict.items()}


def _eval_logits(model: nn.Module, probe: torch.Tensor, name: str, in_channels: int, image_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(probe)
    except (RuntimeError, ValueError, AssertionError, IndexError) as error:
        raise ConfigError(
            f"torchvision model {name!r} cannot take {in_channels}x{image_size}x{image_size} images ({error}); "
            "pick another --arch"
        ) from error
    finally:
        model.train(was_training)


def _first_module_path(model: nn.Module, kind: type[nn.Module], name: str) -> str:
    for path, module in model.named_modules():
        if isinstance(module, kind):
            return path
    raise ConfigError(f"torchvision model {name!r} has no {kind.__name__} layer; pick another --arch")


def _last_module_path(model: nn.Module, kind: type[nn.Module], name: str) -> str:
    found = [path for path, module in model.named_modules() if isinstance(module, kind)]
    if not found:
        raise ConfigError(
            f"torchvision model {name!r} has no final {kind.__name__} layer to take features from; pick another --arch"
        )
    return found[-1]


def _with_in_channels(conv: nn.Conv2d, in_channels: int, name: str) -> nn.Conv2d:
    if in_channels % conv.groups != 0:
        raise ConfigError(
            f"torchvision model {name!r}: its first convolution has {conv.groups} groups, which cannot take "
            f"{in_channels} input channels; pick another --arch"
        )
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
