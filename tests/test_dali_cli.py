"""``--loader dali`` on the command line: pretrain and evaluate end to end, one-line errors for a
missing DALI, an unknown loader and a device DALI cannot use, and the GPU pipeline where there is one."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from data_fixtures import write_tiny_imagenet

from fastlrwa.cli import cli
from fastlrwa.data import load_split
from fastlrwa.data.dali import check_loader, load_split_dali, load_split_with
from fastlrwa.data.dali_runtime import DALI_MISSING, dali_device_id
from fastlrwa.errors import ConfigError

needs_dali = pytest.mark.skipif(
    importlib.util.find_spec("nvidia.dali") is None,
    reason="NVIDIA DALI is not installed: pip install 'fastlrwa[dali]'",
)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture
def without_dali(monkeypatch):
    """Imports of DALI fail as on a machine where it is not installed (None in sys.modules)."""
    for name in ("nvidia.dali", "nvidia.dali.plugin", "nvidia.dali.plugin.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_dali_names_the_extra(without_dali, lenet_teacher, tmp_path):
    with pytest.raises(ConfigError) as caught:
        check_loader("dali")
    assert str(caught.value) == DALI_MISSING == "--loader dali needs NVIDIA DALI: pip install 'fastlrwa[dali]'"
    with pytest.raises(ConfigError, match="fastlrwa\\[dali\\]"):
        load_split_dali("digits", "test")

    evaluated = _invoke("evaluate", "--checkpoint", lenet_teacher, "--dataset", "digits", "--loader", "dali")
    pretrained = _invoke(
        "pretrain", "--dataset", "digits", "--epochs", "1", "--out", tmp_path / "t", "--no-progress", "--loader", "dali"
    )
    for result in (evaluated, pretrained):
        assert result.exit_code == 2
        assert _one_error_line(result) == f"error: {DALI_MISSING}"
    assert not (tmp_path / "t").exists()


def test_torch_loader_works_without_dali(without_dali):
    loaded = load_split_with("torch", "digits", "test")
    assert torch.equal(loaded.images, load_split("digits", "test").images)


def test_unknown_loader_is_refused():
    with pytest.raises(ConfigError, match="use torch or dali"):
        load_split_with("tensorflow", "digits", "test")
    result = _invoke("evaluate", "--checkpoint", "x.pt", "--dataset", "digits", "--loader", "tensorflow")
    assert result.exit_code == 2 and "tensorflow" in result.output


def test_dali_device_ids():
    assert dali_device_id(torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="cpu or cuda"):
        dali_device_id(torch.device("meta"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_request_without_cuda_is_one_clear_line():
    with pytest.raises(ConfigError, match="needs a CUDA GPU but none is available; use --device cpu"):
        dali_device_id(torch.device("cuda"))


@needs_dali
def test_pretrain_with_dali_then_evaluate_with_both_loaders(tmp_path):
    out = tmp_path / "teacher"
    result = _invoke(
        "pretrain",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--out",
        out,
        "--no-progress",
        "--seed",
        "2",
        "--device",
        "cpu",
        "--loader",
        "dali",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loader"] == "dali" and len(metrics["history"]) == 1
    assert np.isfinite(metrics["history"][0]["train_loss"])
    accuracies = []
    for loader in ("dali", "torch"):
        evaluated = _invoke(
            "evaluate",
            "--checkpoint",
            out / "model.pt",
            "--dataset",
            "digits",
            "--json",
            "--device",
            "cpu",
            "--loader",
            loader,
        )
        assert evaluated.exit_code == 0, evaluated.output
        accuracies.append(json.loads(evaluated.output.strip().splitlines()[-1])["test_accuracy"])
    assert accuracies == [metrics["test_accuracy"]] * 2


@needs_dali
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_pipeline_matches_the_cpu_pipeline(tmp_path):
    from fastlrwa.data.dali import DaliTrainBatches
    from fastlrwa.data.dali_sources import dali_source

    write_tiny_imagenet(tmp_path, np.random.default_rng())
    for name in ("digits", "tiny-imagenet"):
        on_cpu = load_split_dali(name, "test", root=tmp_path)
        on_gpu = load_split_dali(name, "test", root=tmp_path, device="cuda")
        assert on_gpu.images.is_cuda and on_gpu.labels.is_cuda
        assert torch.equal(on_gpu.labels.cpu(), on_cpu.labels)
        # nvJPEG's IDCT may round differently from libjpeg-turbo (not measured here: no GPU); arrays are exact.
        tolerance = 2 if name == "tiny-imagenet" else 0
        difference = (on_gpu.images.cpu().int() - on_cpu.images.int()).abs().max().item()
        assert difference <= tolerance
        batches = DaliTrainBatches(dali_source(name, "train", root=tmp_path), batch_size=16, device="cuda", seed=0)
        images, labels = next(batches.epoch())
        assert images.is_cuda and labels.is_cuda and images.dtype == torch.float32 and labels.dtype == torch.int64
