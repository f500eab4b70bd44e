"""CIFAR-style ResNet-18/34 (He et al. 2016 as adapted for 32x32 inputs in the DFKD code bases).

A 3x3 stride-1 stem without max-pool, four stages of BasicBlocks (widths 64, 128, 256, 512; stages
2-4 halve the resolution), global average pooling, one Linear. Attribute names (``conv1``, ``bn1``,
``layer1``.. ``layer4``, ``shortcut``, ``linear``) match DFAD/CMI/LRWA's ``resnet_cifar`` so their
state_dicts load as is.

Tiny-ImageNet (64x64) uses the same network: the stem keeps stride 1 and the pooling is adaptive, so
a 64x64 input just ends in an 8x8 map instead of 4x4 before pooling (the choice of the DFKD repos).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.models.classifier import Classifier, init_weights

STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv + BN when the shape changes, else identity)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # An empty Sequential is the identity and keeps the reference code's state_dict keys.
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """ResNet with BasicBlocks; ``blocks_per_stage`` (2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34."""

    stem_weight_key = "conv1.weight"
    head_weight_key = "linear.weight"

    def __init__(
        self, arch: str, blocks_per_stage: tuple[int, int, int, int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__(arch, num_classes, in_channels, feature_dim=STAGE_WIDTHS[-1])
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        for index, (width, blocks) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage)):
            first_stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(BasicBlock(in_planes, width, first_stride if block == 0 else 1))
                in_planes = width
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.linear = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


def resnet18(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-18: BasicBlocks [2, 2, 2, 2]."""
    return CifarResNet("resnet18", (2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-34: BasicBlocks [3, 4, 6, 3]."""
    return CifarResNet("resnet34", (3, 4, 6, 3), num_classes, in_channels)
