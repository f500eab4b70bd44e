"""ZSKD's transfer set: its data impressions synthesised once per run and kept in the run directory.

The impressions are a function of the teacher, the ``impressions`` options and the seed alone (their
noise and targets come from streams of their own), so a resumed run reads them back from
``impressions.pt`` instead of spending the synthesis again; a file that is missing or was made for other
settings is rebuilt, to the same result. The file is written atomically, as checkpoints are, and read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from fastlrwa.atomic_io import atomic_torch_save
from fastlrwa.data import DatasetInfo
from fastlrwa.errors import ConfigError
from fastlrwa.losses.impressions import (
    class_similarity,
    dirichlet_targets,
    impression_classes,
    impression_step,
    start_state,
)
from fastlrwa.losses.options import ImpressionOptions
from fastlrwa.models.foreign_teacher import last_linear
from fastlrwa.progress import EpochProgress

IMPRESSIONS_FORMAT = "fastlrwa-impressions"
IMPRESSIONS_VERSION = 1


def class_vectors(teacher: nn.Module, arch: str) -> torch.Tensor:
    """The weight [K, d] of the teacher's last ``nn.Linear``, whose rows ZSKD compares; a teacher without one is
    refused with what to do."""
    head = last_linear(teacher)
    if head is None:
        raise ConfigError(
            f"zskd reads its class similarities from the weights of the teacher's last nn.Linear layer, which this "
            f"{arch} teacher does not expose; load the teacher from its own class with --teacher-factory (its "
            "state_dict as --teacher), or use another method"
        )
    return head.weight.detach()


def _settings(options: ImpressionOptions, seed: int, teacher_sha256: str) -> dict:
    """What the impressions depend on (the chunk size changes only the speed)."""
    settings = dataclasses.asdict(options)
    for key in ("chunk", "shift", "flip"):
        settings.pop(key)
    return {"options": settings, "seed": seed, "teacher_sha256": teacher_sha256}


def synthesise(
    teacher: nn.Module,
    weight: torch.Tensor,
    info: DatasetInfo,
    options: ImpressionOptions,
    seed: int,
    device: torch.device,
    progress: EpochProgress,
) -> torch.Tensor:
    """All ``options.count`` impressions in pixel space [0, 1], [N, C, H, W] on ``device``, a chunk at a time.

    The loss is read back once per chunk, for the progress line, after its last step."""
    classes, scales = impression_classes(options.count, info.num_classes, options.beta_values())
    targets = dirichlet_targets(class_similarity(weight.float()), classes, scales, seed).to(device)
    noise = torch.Generator(device="cpu").manual_seed(seed)
    pixels = torch.rand(options.count, info.channels, info.image_size, info.image_size, generator=noise).to(device)
    shape = (1, info.channels, 1, 1)
    mean = torch.tensor(info.mean, device=device).view(shape)
    std = torch.tensor(info.std, device=device).view(shape)
    chunks = range(0, options.count, options.chunk)
    progress.start(f"impressions ({options.count} x {options.steps} steps)", len(chunks) * options.steps)
    started = time.perf_counter()
    for first in chunks:
        state = start_state(pixels[first : first + options.chunk])
        for _ in range(options.steps):
            state, loss = impression_step(
                teacher,
                state,
                targets[first : first + options.chunk],
                mean,
                std,
                temperature=options.temperature,
                lr=options.lr,
            )
            progress.advance(1)
        pixels[first : first + options.chunk] = state.pixels
        progress.log(
            f"impressions {min(first + options.chunk, options.count)}/{options.count}: loss {float(loss):.4f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
    return pixels


def load_or_synthesise(
    path: Path | None,
    teacher: nn.Module,
    arch: str,
    info: DatasetInfo,
    options: ImpressionOptions,
    seed: int,
    teacher_sha256: str,
    device: torch.device,
    progress: EpochProgress,
    log: Callable[[str], None],
) -> torch.Tensor:
    """The run's impressions: read from ``path`` where it holds those of these settings, else synthesised (and
    written to ``path``, unless it is None: the ranks of a distributed run other than rank 0)."""
    weight = class_vectors(teacher, arch)
    settings = _settings(options, seed, teacher_sha256)
    if path is not None and path.exists():
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # torch raises many types for a damaged file
            saved = None
        if isinstance(saved, dict) and saved.get("format") == IMPRESSIONS_FORMAT and saved.get("settings") == settings:
            log(f"impressions read from {path}")
            return saved["pixels"]
        log(f"{path} holds no impressions of these settings: building them again")
    pixels = synthesise(teacher, weight, info, options, seed, device, progress)
    if path is not None:
        state = {"format": IMPRESSIONS_FORMAT, "version": IMPRESSIONS_VERSION, "settings": settings, "pixels": pixels}
        atomic_torch_save(state, path)
    return pixels
