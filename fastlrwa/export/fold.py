"""Folding eval-mode BatchNorm into the model's weights before export.

In eval mode a BatchNorm is a fixed per-channel affine map ``y = x * scale + shift`` with
``scale = weight / sqrt(running_var + eps)`` and ``shift = bias - running_mean * scale``. Where it
directly follows a convolution whose only user it is (ResNet's conv-BN pairs, WRN's ``conv1 -> bn2``),
that map is merged into the convolution's weight and bias and the BatchNorm disappears. Where it
follows anything else (WRN's pre-activation BatchNorms sit after a residual sum), it becomes a
``ChannelAffine`` multiply-add, which the compiler fuses into the neighbouring kernels. Either way no
BatchNorm is left in the exported program.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.fx
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fastlrwa.errors import ConfigError
from fastlrwa.models import CLASSIFIER_NAMES

FOLDABLE_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel (dimension 1): an eval-mode BatchNorm with its statistics baked in."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    @classmethod
    def from_batchnorm(cls, batchnorm: _BatchNorm) -> "ChannelAffine":
        """The affine map ``batchnorm`` applies in eval mode."""
        scale = torch.rsqrt(batchnorm.running_var + batchnorm.eps)
        if batchnorm.affine:
            scale = scale * batchnorm.weight
        shift = -batchnorm.running_mean * scale
        if batchnorm.affine:
            shift = shift + batchnorm.bias
        return cls(scale.detach().clone(), shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_channel = (-1,) + (1,) * (x.dim() - 2)
        return x * self.scale.reshape(per_channel) + self.shift.reshape(per_channel)


def fold_batchnorm(model: nn.Module) -> torch.fx.GraphModule:
    """A traced copy of eval-mode ``model`` that computes the same logits with no BatchNorm module left.

    A copy of ``model`` is traced with ``torch.fx`` (``forward(x)`` with every other argument at its
    default), so ``model`` is left as it is. Raises ``ConfigError`` when the model cannot be traced or a
    BatchNorm has no running statistics (its eval-mode output would depend on the batch).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode; call model.eval() first")
    graph_module = _trace(copy.deepcopy(model))
    modules = dict(graph_module.named_modules())
    calls_per_module = _calls_per_module(graph_module.graph)
    for node in list(graph_module.graph.nodes):
        batchnorm = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(batchnorm, _BatchNorm):
            continue
        _require_running_statistics(node.target, batchnorm)
        source = node.args[0]
        convolution = modules.get(source.target) if source.op == "call_module" else None
        # A convolution called elsewhere too, or whose output is also used unnormalised, must stay as it is.
        if (
            isinstance(convolution, FOLDABLE_CONVOLUTIONS)
            and len(source.users) == 1
            and calls_per_module[source.target] == 1
        ):
            graph_module.set_submodule(source.target, fuse_conv_bn_eval(convolution, batchnorm))
            node.replace_all_uses_with(source)
            graph_module.graph.erase_node(node)
        else:
            graph_module.set_submodule(node.target, ChannelAffine.from_batchnorm(batchnorm))
    graph_module.delete_all_unused_submodules()
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module.eval()


def _trace(model: nn.Module) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(model, concrete_args=_default_arguments(model))
    except torch.fx.proxy.TraceError as error:
        raise ConfigError(
            f"{type(model).__name__} cannot be traced for export ({error}); export a student of a registered "
            f"architecture ({', '.join(CLASSIFIER_NAMES)})"
        ) from error


def _default_arguments(model: nn.Module) -> dict[str, object]:
    """Every ``forward`` argument after the input, fixed at its default (``return_features=False``)."""
    parameters = list(inspect.signature(model.forward).parameters.values())[1:]
    return {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.default is not inspect.Parameter.empty
    }


def _calls_per_module(graph: torch.fx.Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def _require_running_statistics(name: str, batchnorm: _BatchNorm) -> None:
    if batchnorm.running_mean is None or batchnorm.running_var is None:
        raise ConfigError(
            f"BatchNorm {name!r} keeps no running statistics (track_running_stats=False), so its output depends "
            "on the batch and cannot be folded; export a model whose BatchNorms track running statistics"
        )
