"""The default precision (``--amp auto``) in a whole run: where the CPU computes bf16 natively, the generator alone
computes in it and hands float32 images to float32 classifiers; elsewhere the run is float32 throughout."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY_TRAIN_FLAGS, tiny_overrides
from fastlrwa import runtime
from fastlrwa.cli import cli
from fastlrwa.config.presets import train_config
from fastlrwa.distributed import DistributedContext
from fastlrwa.runtime import seed_everything
from fastlrwa.trainer.build import build_run


def _claim_cpu_flags(monkeypatch, tmp_path, flags: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)


@pytest.mark.parametrize(
    "flags, generator_dtype", [("fpu avx2 avx512f amx_bf16 amx_tile", torch.bfloat16), ("fpu avx2 fma", None)]
)
def test_auto_puts_only_the_generator_in_bf16_where_the_cpu_has_it(
    monkeypatch, tmp_path, lenet_teacher, flags, generator_dtype
):
    _claim_cpu_flags(monkeypatch, tmp_path, flags)
    config = train_config("digits", tiny_overrides(tmp_path / "run", lenet_teacher, **{"runtime.amp": "auto"}))
    seed_everything(3)
    with DistributedContext.from_environment("cpu") as context:
        parts = build_run(config, lenet_teacher, context)
        assert parts.generator.compute_dtype is generator_dtype
        assert parts.autocast_dtype is None
        z = torch.randn(config.schedule.batch_size, config.generator.latent_dim)
        generated = parts.generator_update.step(z)
        images, teacher_logits = parts.student_batch(z)
    for tensor in (generated.images, generated.teacher_logits, images, teacher_logits):
        assert tensor.dtype is torch.float32 and torch.isfinite(tensor).all()
    assert all(p.dtype is torch.float32 and p.grad is not None for p in parts.generator.parameters() if p.requires_grad)


def test_no_amp_trains_in_float32_on_a_cpu_with_native_bf16(monkeypatch, tmp_path, lenet_teacher):
    _claim_cpu_flags(monkeypatch, tmp_path, "fpu avx2 amx_bf16")
    config = train_config("digits", tiny_overrides(tmp_path / "run", lenet_teacher, **{"runtime.amp": "none"}))
    with DistributedContext.from_environment("cpu") as context:
        parts = build_run(config, lenet_teacher, context)
    assert parts.generator.compute_dtype is None and parts.autocast_dtype is None


def test_a_default_run_trains_to_finite_losses_and_a_measured_accuracy(monkeypatch, tmp_path, lenet_teacher):
    _claim_cpu_flags(monkeypatch, tmp_path, "fpu avx2 amx_bf16")
    result = CliRunner().invoke(
        cli, ["train", "--teacher", str(lenet_teacher), "--out", str(tmp_path / "run"), *TINY_TRAIN_FLAGS]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["runtime"]["amp"] == "auto"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(math.isfinite(r["loss_student"]) and math.isfinite(r["loss_generator"]) for r in records)
    assert 0.0 <= records[-1]["test_accuracy"] <= 100.0
