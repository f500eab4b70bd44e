"""Shared fixtures: small teachers written as real checkpoint files, and a tiny run config."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

from fastlrwa.data import dataset_info
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint

# The tests run small tensors, for which a second OpenMP thread only adds barrier waits; on a loaded
# 2-core machine those waits made steps ~50x slower. One thread keeps the suite fast and its timing stable.
torch.set_num_threads(1)


@pytest.fixture
def rng() -> random.Random:
    """A generator with a fresh seed each run, printed so that a failure can be replayed."""
    seed = random.SystemRandom().randrange(2**32)
    print(f"random seed {seed}")
    return random.Random(seed)


def write_teacher(
    path: Path, arch: str, dataset: str = "digits", *, num_classes: int | None = None, seed: int = 0
) -> Path:
    """A randomly initialised teacher saved in the fastlrwa model format (what ``pretrain`` writes)."""
    info = dataset_info(dataset)
    classes = num_classes or info.num_classes
    torch.manual_seed(seed)
    model = build_model(arch, classes, in_channels=info.channels, image_size=info.image_size)
    meta = dataclasses.replace(ModelMeta.for_dataset(arch, info), num_classes=classes)
    save_model_checkpoint(path, model.eval(), meta)
    return path


@pytest.fixture(scope="session")
def lenet_teacher(tmp_path_factory) -> Path:
    return write_teacher(tmp_path_factory.mktemp("teacher") / "lenet5.pt", "lenet5")


@pytest.fixture(scope="session")
def bn_teacher(tmp_path_factory) -> Path:
    """A teacher with BatchNorm layers (DFQ matches their statistics)."""
    return write_teacher(tmp_path_factory.mktemp("teacher") / "wrn16_1.pt", "wrn16_1")


def tiny_overrides(out: Path, teacher: Path, **extra) -> dict:
    """Dotted-path overrides for a run of a few seconds on the digits test split."""
    overrides = {
        "method": "lrwa-mb",
        "runtime.out": str(out),
        "runtime.progress": False,
        # float32 on every machine: these runs are compared with float64 references and across processes; the
        # default precision (the generator in bf16 where the CPU has it) has tests of its own
        "runtime.amp": "none",
        "teacher.path": str(teacher),
        "student.arch": "lenet5_half",
        "generator.latent_dim": 16,
        "generator.width": 8,
        "schedule.epochs": 2,
        "schedule.iters_per_epoch": 2,
        "schedule.gen_steps": 1,
        "schedule.student_steps": 2,
        "schedule.batch_size": 24,
        "replay.slots": 3,
        "replay.slot_size": 8,
        "replay.push_every": 1,
        "replay.vae_latent": 8,
        "replay.vae_warmup_steps": 1,
        "replay.replay_batch": 8,
    }
    overrides.update(extra)
    return overrides


# With tiny_overrides, a ZSKD run of a few seconds: 60 impressions (3 a class and beta), 4 steps, 3 batches
# an epoch.
ZSKD_TINY = {
    "method": "zskd",
    "schedule.gen_steps": 0,
    "schedule.student_steps": 1,
    "schedule.iters_per_epoch": 3,
    "schedule.batch_size": 20,
    "impressions.count": 60,
    "impressions.steps": 4,
    "impressions.chunk": 25,
}

# `fastlrwa train` flags for a run of about a second: one iteration of one student step at toy sizes. Flags given
# after these override them (click keeps the last value).
TINY_TRAIN_FLAGS = [
    "--student",
    "lenet5_half",
    "--epochs",
    "1",
    "--iters-per-epoch",
    "1",
    "--student-steps",
    "1",
    "--batch-size",
    "16",
    "--latent-dim",
    "8",
    "--generator-width",
    "8",
    "--memory-slot-size",
    "8",
    "--no-progress",
]


def assert_train_refused_in_one_line(tmp_path: Path, flags, named: str) -> None:
    """A tiny ``fastlrwa train`` with ``flags`` exits 2 with one line naming ``named``, and makes no run directory."""
    from click.testing import CliRunner

    from fastlrwa.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--out", str(out), *TINY_TRAIN_FLAGS, *flags])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0] and not out.exists()


TIMING_KEYS = {"epoch_time_s", "step_time_s", "samples_per_s", "eval_time_s", "wall_time_s"}


def without_timing(records: list[dict]) -> list[dict]:
    """Epoch records less the wall-clock fields, which no two runs share."""
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


# Three short epochs of LRWA with every diagnostic measured often: a run whose every logged value a resume
# or a switched-off diagnostic must reproduce.
DIAGNOSED_LRWA_RUN = {
    "method": "lrwa-mb",
    "schedule.epochs": 3,
    "schedule.iters_per_epoch": 3,
    "diagnostics.grad_norm_every": 2,
    "diagnostics.sample_grid": 4,
}


def signal_after_line(process: subprocess.Popen, prefix: str, signum: int, *, timeout: float = 120) -> str:
    """Send ``signum`` to ``process`` once a line of its stderr starts with ``prefix`` (at the latest after
    240 s), and return the rest of its stderr; the process is killed however that ends."""
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not process.stderr.readline().startswith(prefix):
            pass
        process.send_signal(signum)
        return process.communicate(timeout=timeout)[1]
    finally:
        process.kill()


def replay_batches(new: int, memory: int, side: int, classes: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Fresh random ``(x_new, t_new, x_mem, t_mem)``: 3-channel ``side`` x ``side`` images and teacher logits."""
    return (
        torch.randn(new, 3, side, side, dtype=dtype),
        torch.randn(new, classes, dtype=dtype),
        torch.randn(memory, 3, side, side, dtype=dtype),
        torch.randn(memory, classes, dtype=dtype),
    )


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters, detached, as the update functions take them."""
    return {name: p.detach() for name, p in model.named_parameters()}


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module: the benchmarks are scripts, not a package."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module
