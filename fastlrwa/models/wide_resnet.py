"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016) with pre-activation blocks and no dropout.

A 3x3 stem to 16 channels, three groups of (d-4)/6 blocks with widths 16k, 32k, 64k (groups 2 and 3
halve the resolution), BN-ReLU, global average pooling, one Linear. Attribute names (``block1``..
``block3``, ``layer``, ``convShortcut``, ``bn1``, ``fc``) are those of the reference implementation used
by ZSKT/DFAD/CMI/LRWA, so their WRN state_dicts load as is; ``convShortcut`` keeps that spelling for
the same reason. Pooling is adaptive, so 64x64 inputs work too (a 16x16 map before pooling).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.models.classifier import Classifier, init_weights

STEM_WIDTH = 16


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut.

    When the shape changes the shortcut is a 1x1 convolution of the *pre-activated* input, as in the
    reference implementation (the BN-ReLU is shared by both branches).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.convShortcut = None
        if stride != 1 or in_planes != out_planes:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        shortcut = x if self.convShortcut is None else self.convShortcut(activated)
        return out + shortcut


class WideResNetGroup(nn.Module):
    """A group of blocks at one width; the ``layer`` attribute reproduces the reference state_dict keys."""

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(Classifier):
    """WRN-depth-widen_factor; depth must be 6n + 4."""

    stem_weight_key = "conv1.weight"
    head_weight_key = "fc.weight"

    def __init__(self, arch: str, depth: int, widen_factor: int, num_classes: int, in_channels: int) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = (STEM_WIDTH, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(arch, num_classes, in_channels, feature_dim=widths[3])
        self.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = WideResNetGroup(blocks, widths[0], widths[1], stride=1)
        self.block2 = WideResNetGroup(blocks, widths[1], widths[2], stride=2)
        self.block3 = WideResNetGroup(blocks, widths[2], widths[3], stride=2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def wrn16_1(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-16-1: 2 blocks per group, widths 16, 32, 64."""
    return WideResNet("wrn16_1", 16, 1, num_classes, in_channels)


def wrn16_2(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-16-2: 2 blocks per group, widths 32, 64, 128."""
    return WideResNet("wrn16_2", 16, 2, num_classes, in_channels)


def wrn40_2(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-40-2: 6 blocks per group, widths 32, 64, 128."""
    return WideResNet("wrn40_2", 40, 2, num_classes, in_channels)
