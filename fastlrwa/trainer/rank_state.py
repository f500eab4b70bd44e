"""The part of a training checkpoint that differs between the processes of a distributed run.

Each rank draws its own latents and replay batches, keeps its own replay memory and its own epoch
sums, and its BatchNorm running statistics drift apart between the end-of-epoch averages. Weights,
optimiser and scheduler states are the same on every rank and are saved once, from rank 0.
"""

from __future__ import annotations

from typing import Any

import torch

from fastlrwa.models.batchnorm import batchnorm_running_stats
from fastlrwa.trainer.build import RunParts
from fastlrwa.trainer.epoch_stats import EpochStats
from fastlrwa.trainer.rng_state import capture_rng_state, restore_rng_state


def _on_cpu(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: _on_cpu(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_on_cpu(value) for value in tree)
    return tree


def capture_rank_state(parts: RunParts, stats: EpochStats) -> dict:
    """This rank's own state: random streams, epoch sums, BatchNorm statistics and replay memory.

    On the CPU, so that it can be gathered to rank 0 (pickled) without naming this rank's GPU; the
    tensors may still share memory with live CPU state: save or gather it at once.
    """
    state = {
        "rng": capture_rng_state({"trainer": parts.rng}),
        "epoch_stats": stats.state_dict(),
        "batchnorm": {
            name: batchnorm_running_stats(module)
            for name, module in (("student", parts.student), ("generator", parts.generator))
        },
    }
    if parts.replay is not None:
        state["replay"] = parts.replay.state_dict()
    return _on_cpu(state)


def restore_rank_state(state: dict, parts: RunParts, stats: EpochStats) -> None:
    """Put back what :func:`capture_rank_state` saved (after the shared module states are loaded)."""
    if parts.replay is not None:
        parts.replay.load_state_dict(state["replay"])
    restore_rng_state(state["rng"], {"trainer": parts.rng})
    stats.load_state_dict(state["epoch_stats"])
    with torch.no_grad():
        for name, module in (("student", parts.student), ("generator", parts.generator)):
            live = batchnorm_running_stats(module)
            for key, value in state["batchnorm"][name].items():
                live[key].copy_(value)
