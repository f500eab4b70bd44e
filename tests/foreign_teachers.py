"""A small network of a user's own class (three convolutions with BatchNorm), not a fastlrwa architecture,
and the three files a user may save it as: TorchScript, a torch.export program, a state_dict."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


class UserCNN(nn.Module):
    """32x32 grey images to 10 logits: 3 x (conv, BatchNorm, ReLU, pool), a Linear head."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for out in (width, 2 * width, 2 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(channels * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class LoopingCNN(UserCNN):
    """UserCNN with a loop whose trip count depends on the data (it scales too large features down), which torch's
    TorchScript converter cannot translate; on the tests' inputs it runs no iteration, the forward is UserCNN's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        while bool(features.abs().max() > 1e6):
            features = features * 0.5
        return self.head(features)


def user_cnn(seed: int = 0, cls: type[UserCNN] = UserCNN) -> UserCNN:
    """A ``cls`` with random weights and BatchNorm statistics that are not the identity's."""
    torch.manual_seed(seed)
    model = cls()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.7)
    return model.eval()


def save_three_ways(model: nn.Module, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "torchscript": folder / "teacher_script.pt",
        "exported": folder / "teacher.pt2",
        "state_dict": folder / "teacher_weights.pt",
    }
    torch.jit.save(torch.jit.script(model), str(paths["torchscript"]))
    example = (torch.randn(2, 1, 32, 32),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(paths["exported"]))
    torch.save(model.state_dict(), paths["state_dict"])
    return paths


FACTORY = f"{Path(__file__).resolve()}:UserCNN"
