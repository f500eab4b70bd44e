"""The contract every classifier built by ``build_model`` follows, and their shared initialisation."""

from __future__ import annotations

import abc

import torch
import torch.nn as nn


class Classifier(abc.ABC, nn.Module):
    """An image classifier that can hand back its last feature map.

    ``forward(x, return_features=False)`` returns logits ``[N, num_classes]``, or ``(logits, features)``
    from the same forward pass, where ``features`` ``[N, feature_dim]`` is what DAFL's and the LRWA
    authors' activation prior reads (their ``features_T[-1]``): the pooled features, i.e. the input
    of the final Linear, for the ResNets, WRNs and torchvision models; LeNet-5's conv3 output, whose
    head is two Linear layers. The generator's activation loss reads the teacher's features without
    a second teacher forward.

    ``stem_weight_key`` and ``head_weight_key`` name the state_dict entries of the first convolution's
    weight and the final Linear's weight; a bare state_dict's input channels and class count are read
    from their shapes.

    The registered architectures avoid in-place operations on tensors that autograd needs, so
    second-order gradients (the LRWA meta-update differentiates through the student's gradient) flow
    through them; torchvision models are used as torchvision defines them.
    """

    stem_weight_key: str
    head_weight_key: str

    def __init__(self, arch: str, num_classes: int, in_channels: int, feature_dim: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_dim = feature_dim

    @abc.abstractmethod
    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the classifier head: images ``[N, C, H, W]`` to features ``[N, feature_dim]``."""

    @abc.abstractmethod
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The classifier head: features ``[N, feature_dim]`` to logits ``[N, num_classes]``."""

    def canonical_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the keys of a state_dict saved by another program to this model's keys.

        Registered architectures already use the keys of the public DFKD code bases, so the default
        is the identity; wrappers whose keys differ from the wrapped library's override it.
        """
        return state_dict

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.extract_features(x)
        logits = self.classify(features)
        if return_features:
            return logits, features
        return logits


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out, ReLU gain), BatchNorm weight 1 and bias 0, zero Linear biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def layer_default_init(model: nn.Module) -> None:
    """Re-draw every layer's weights with its own PyTorch initialisation (``reset_parameters``): the
    initialisation the authors' students keep, where :func:`init_weights` is fastlrwa's."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
