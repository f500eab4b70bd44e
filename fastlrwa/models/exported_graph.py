"""Modules put back into an exported teacher's graph, so that hooks can read what the trainer needs.

``torch.export`` keeps no ``nn.Module`` of the model: a BatchNorm layer is an ``aten.batch_norm`` call on its
weights and running statistics, the classifier head an ``aten.linear`` call. Each eval-mode ``aten.batch_norm``
call becomes a call of an ``nn.BatchNorm`` module, and the last ``aten.linear`` call an ``nn.Linear``, holding
the very same tensors, so the graph computes what it did, and DFQ (the inputs of the BatchNorm layers) and the
activation prior (the input of the last Linear) can hook them as in a Python module.

The graph's weights may be buffers rather than parameters (torch's TorchScript converter makes every tensor of
the script a buffer: ``fastlrwa.models.script_conversion``); the modules then hold them as frozen parameters
that share their storage.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

_ATEN = torch.ops.aten


class GraphBatchNorm(_BatchNorm):
    """An eval-mode BatchNorm of any input rank (the graph says nothing of which ``nn.BatchNormNd`` it was)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass


def _attr(module: torch.fx.GraphModule, node: object) -> torch.Tensor | None:
    """The tensor a ``get_attr`` node reads (a parameter or a buffer of the graph module), else None."""
    if not (isinstance(node, torch.fx.Node) and node.op == "get_attr"):
        return None
    owner, _, name = str(node.target).rpartition(".")
    value = getattr(module.get_submodule(owner), name, None)
    return value if isinstance(value, torch.Tensor) else None


def _as_parameter(tensor: torch.Tensor | None) -> nn.Parameter | None:
    """``tensor`` as a parameter of a module (the same storage; frozen where it was a buffer), None for None."""
    if tensor is None or isinstance(tensor, nn.Parameter):
        return tensor
    return nn.Parameter(tensor, requires_grad=False)


def _replace(module: torch.fx.GraphModule, node: torch.fx.Node, name: str, replacement: nn.Module) -> None:
    module.add_submodule(name, replacement)
    with module.graph.inserting_before(node):
        call = module.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(call)
    module.graph.erase_node(node)


def materialise_modules(module: nn.Module) -> nn.Module:
    """``module`` (an exported program's ``.module()``) with its eval-mode BatchNorm calls and its last Linear
    call turned into modules sharing their tensors; anything else returned as it is."""
    if not isinstance(module, torch.fx.GraphModule):
        return module
    nodes = list(module.graph.nodes)
    norms = 0
    for node in nodes:
        if node.op != "call_function" or node.target is not _ATEN.batch_norm.default or node.kwargs:
            continue
        _, weight, bias, mean, var, training, momentum, eps = node.args[:8]
        stats = (_attr(module, mean), _attr(module, var))
        if training or stats[0] is None or stats[1] is None:
            continue  # a train-mode graph normalises by the batch: no statistics to match
        affine = (_as_parameter(_attr(module, weight)), _as_parameter(_attr(module, bias)))
        if affine[0] is None or affine[1] is None:
            continue
        layer = GraphBatchNorm(stats[0].numel(), eps=eps, momentum=momentum)
        layer.weight, layer.bias = affine
        layer.running_mean, layer.running_var = stats
        _replace(module, node, f"fastlrwa_batchnorm_{norms}", layer.eval())
        norms += 1
    linears = [node for node in nodes if node.op == "call_function" and node.target is _ATEN.linear.default]
    if linears and not linears[-1].kwargs and len(linears[-1].args) == 3:
        _, weight, bias = linears[-1].args
        weight_tensor, bias_tensor = _as_parameter(_attr(module, weight)), _as_parameter(_attr(module, bias))
        if weight_tensor is not None and bias_tensor is not None:
            head = nn.Linear(weight_tensor.shape[1], weight_tensor.shape[0], device="meta")
            head.weight, head.bias = weight_tensor, bias_tensor
            _replace(module, linears[-1], "fastlrwa_head", head)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module
