"""LeNet-5 and LeNet-5-Half, the teacher/student pair of DAFL and ZSKD for 32x32 digit images.

Attribute names (``conv1`` .. ``conv3``, ``fc1``, ``fc2``) match DAFL's, so its state_dicts load as is.
The three 5x5 convolutions and two 2x2 max-pools reduce exactly a 32x32 input to 1x1, so the
registry accepts only ``image_size=32`` (MNIST's 28x28 is padded/resized to 32 by the data module).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastlrwa.models.classifier import Classifier, init_weights

LENET_IMAGE_SIZE = 32


class LeNet5(Classifier):
    """conv5x5(in->c1)-ReLU-maxpool2-conv5x5(c1->c2)-ReLU-maxpool2-conv5x5(c2->c3)-ReLU-fc(c3->f)-ReLU-fc(f->classes).

    LeNet-5 is (c1, c2, c3, f) = (6, 16, 120, 84); LeNet-5-Half halves them to (3, 8, 60, 42).
    Features are the c3-dimensional output of conv3 (after its ReLU): the last feature map, which
    DAFL's and the authors' activation prior reads (their ``features_T[-1]``); the head is
    fc1-ReLU-fc2.
    """

    stem_weight_key = "conv1.weight"
    head_weight_key = "fc2.weight"

    def __init__(self, arch: str, num_classes: int, in_channels: int, widths: tuple[int, int, int, int]) -> None:
        conv1_out, conv2_out, conv3_out, hidden = widths
        super().__init__(arch, num_classes, in_channels, feature_dim=conv3_out)
        self.conv1 = nn.Conv2d(in_channels, conv1_out, kernel_size=5)
        self.conv2 = nn.Conv2d(conv1_out, conv2_out, kernel_size=5)
        self.conv3 = nn.Conv2d(conv2_out, conv3_out, kernel_size=5)
        self.fc1 = nn.Linear(conv3_out, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        init_weights(self)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return torch.flatten(F.relu(self.conv3(x)), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(features)))


def lenet5(num_classes: int, in_channels: int) -> LeNet5:
    """LeNet-5: 6, 16, 120 channels, 84 hidden units."""
    return LeNet5("lenet5", num_classes, in_channels, widths=(6, 16, 120, 84))


def lenet5_half(num_classes: int, in_channels: int) -> LeNet5:
    """LeNet-5-Half: 3, 8, 60 channels, 42 hidden units."""
    return LeNet5("lenet5_half", num_classes, in_channels, widths=(3, 8, 60, 42))
