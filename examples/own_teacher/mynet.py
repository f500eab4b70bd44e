"""A network of your own class: three convolutions with BatchNorm, for 32x32 grey digits."""

import torch
import torch.nn as nn


class MyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = []
        channels = 1
        for out in (16, 32, 64):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(64 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
