"""The command line: pretrain -> evaluate agree, one-line errors with exit codes, python -m entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from click.testing import CliRunner

from conftest import write_teacher
from fastlrwa.cli import cli
from fastlrwa.models import build_model


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_error_line(result):
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_pretrain_then_evaluate_report_the_same_accuracy(tmp_path):
    out = tmp_path / "teacher"
    result = _invoke("pretrain", "--dataset", "digits", "--epochs", "2", "--out", out, "--no-progress", "--seed", "3")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["arch"] == "lenet5" and len(metrics["history"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 100.0
    evaluated = _invoke("evaluate", "--checkpoint", out / "model.pt", "--dataset", "digits", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads(evaluated.output.strip().splitlines()[-1])
    assert summary["test_accuracy"] == metrics["test_accuracy"]
    assert summary["total"] == 360 and len(summary["per_class_accuracy"]) == 10
    assert summary["correct"] == round(summary["test_accuracy"] * 360 / 100)


def test_evaluate_refuses_a_class_count_mismatch(tmp_path):
    teacher = write_teacher(tmp_path / "five.pt", "lenet5", num_classes=5)
    result = _invoke("evaluate", "--checkpoint", teacher, "--dataset", "digits")
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "5" in line and "10" in line and str(teacher) in line


def test_missing_dataset_lists_the_paths_searched(tmp_path):
    teacher = write_teacher(tmp_path / "t.pt", "lenet5", dataset="mnist")
    result = _invoke("evaluate", "--checkpoint", teacher, "--dataset", "mnist", "--data-root", tmp_path / "empty")
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert str(tmp_path / "empty") in line and "mnist" in line.lower()


def test_pickled_module_needs_the_trust_flag(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", 10, in_channels=1)
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    refused = _invoke("evaluate", "--checkpoint", path, "--dataset", "digits")
    assert refused.exit_code == 2 and "--trust-pickle" in _one_error_line(refused)
    accepted = _invoke("evaluate", "--checkpoint", path, "--dataset", "digits", "--json", "--trust-pickle")
    assert accepted.exit_code == 0, accepted.output


def test_bad_flag_value_and_unknown_preset_exit_2():
    assert _invoke("train", "--preset", "imagenet-21k").exit_code == 2
    result = _invoke("train", "--lr-student", "-1", "--no-progress", "--out", "/nonexistent-run-dir")
    assert result.exit_code == 2 and "--lr-student -1.0" in _one_error_line(result)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "fastlrwa", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("train", "pretrain", "evaluate", "report", "export"):
        assert command in result.stdout
