"""NVIDIA DALI as an optional extra: importing it, and which device its pipelines run on."""

from __future__ import annotations

from types import ModuleType

import torch

from fastlrwa.errors import ConfigError

DALI_MISSING = "--loader dali needs NVIDIA DALI: pip install 'fastlrwa[dali]'"


def require_dali() -> ModuleType:
    """The ``nvidia.dali`` package (with its PyTorch plugin loaded); ConfigError when it is not installed."""
    try:
        import nvidia.dali
        import nvidia.dali.plugin.pytorch  # noqa: F401  (the iterator that hands batches to torch)
    except ImportError:
        raise ConfigError(DALI_MISSING) from None
    return nvidia.dali


def dali_device_id(device: torch.device) -> int | None:
    """DALI's ``device_id`` for a torch device: ``None`` runs CPU operators only, an index runs GPU ones."""
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise ConfigError(f"--loader dali runs on cpu or cuda devices, not {device}; use --device cpu or cuda")
    if not torch.cuda.is_available():
        raise ConfigError(f"--loader dali on {device} needs a CUDA GPU but none is available; use --device cpu")
    return device.index if device.index is not None else torch.cuda.current_device()
