"""A teacher from outside fastlrwa (TorchScript, an exported program, the user's own class) behind the interface
the trainer uses: ``forward(x, return_features=False)``, on inputs in the run's normalisation.

The generator's images (and the test set) are in the dataset's normalisation, ``(p - mean_d) / std_d`` of
pixels ``p`` in [0, 1]; the teacher was trained on ``(p - mean_t) / std_t`` (torchvision's ``Normalize``).
The wrapper maps one onto the other, per channel: ``x_t = x * std_d / std_t + (mean_d - mean_t) / std_t``,
the identity where the two agree.

Features (the activation prior's input): the input of the teacher's last ``nn.Linear``, read with a forward
pre-hook in the same pass (an exported graph's last ``aten.linear`` is made an ``nn.Linear`` when it is loaded:
``fastlrwa.models.exported_graph``; so is a TorchScript teacher's, converted to an exported program where torch
can: ``fastlrwa.models.script_conversion``). A TorchScript module that could not be converted takes no hooks
(``takes_hooks`` is False): it has no features (``has_features`` is False), ``forward(x, return_features=True)``
gives ``None`` for them, and ``note`` says why it runs so.

The wrapped model stays in eval mode: ``train()`` switches this wrapper alone (an exported graph cannot be
switched at all, and a frozen teacher's BatchNorm must use its running statistics).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class ForeignTeacher(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        *,
        arch: str,
        num_classes: int,
        in_channels: int,
        dataset_norm: tuple[Sequence[float], Sequence[float]],
        teacher_norm: tuple[Sequence[float], Sequence[float]],
        note: str = "",
    ) -> None:
        super().__init__()
        self.model = model
        self.arch = arch
        self.note = note  # how the file runs, for the run's first line ("" where there is nothing to say)
        self.takes_hooks = not isinstance(model, torch.jit.ScriptModule)
        self.num_classes = num_classes
        self.in_channels = in_channels
        (mean_d, std_d), (mean_t, std_t) = dataset_norm, teacher_norm
        shape = (1, in_channels, 1, 1)
        scale = [sd / st for sd, st in zip(std_d, std_t)]
        shift = [(md - mt) / st for md, mt, st in zip(mean_d, mean_t, std_t)]
        self.register_buffer("input_scale", torch.tensor(scale, dtype=torch.float32).view(shape))
        self.register_buffer("input_shift", torch.tensor(shift, dtype=torch.float32).view(shape))
        self._features: torch.Tensor | None = None
        head = last_linear(model)
        self.has_features = head is not None
        if head is not None:
            head.register_forward_pre_hook(self._keep_features)

    def _keep_features(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0]

    def train(self, mode: bool = True) -> "ForeignTeacher":
        self.training = mode
        return self

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        self._features = None
        logits = self.model(x * self.input_scale.to(x.dtype) + self.input_shift.to(x.dtype))
        if not return_features:
            return logits
        features, self._features = self._features, None
        return logits, features


def last_linear(model: nn.Module) -> nn.Linear | None:
    """The last ``nn.Linear`` registered in a Python module (its classifier head), or None: for a TorchScript
    module (no hooks) and a module without one."""
    if isinstance(model, torch.jit.ScriptModule):
        return None
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None
