"""The training loop end to end on tiny runs: every method, exact resume, Ctrl-C, NaN, bad input."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from click.testing import CliRunner

from conftest import DIAGNOSED_LRWA_RUN, TINY_TRAIN_FLAGS, ZSKD_TINY, tiny_overrides, without_timing, write_teacher
from fastlrwa.cli import cli
from fastlrwa.commands.train import run_train
from fastlrwa.config.methods import METHODS
from fastlrwa.config.presets import train_config
from fastlrwa.data import dataset_info
from fastlrwa.errors import CheckpointError, ConfigError, Interrupted, NonFiniteLossError
from fastlrwa.models import build_model
from fastlrwa.trainer.loop import Trainer
from fastlrwa.updates.student_update import StudentUpdate


def _run(out, teacher, *, resume=False, force=False, **extra):
    overrides = tiny_overrides(out, teacher, **extra)
    return run_train(train_config("digits", overrides), resume=resume, force=force, explicit=set(overrides))


def _lines(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_two_epochs(method, tmp_path, lenet_teacher, bn_teacher):
    teacher = bn_teacher if method == "dfq" else lenet_teacher
    zskd = METHODS[method].generator_objective == "impressions"
    history = _run(tmp_path / method, teacher, **{"method": method, **(ZSKD_TINY if zskd else {})})
    lines = _lines(tmp_path / method)
    assert [line["epoch"] for line in lines] == [1, 2] == [h["epoch"] for h in history]
    for line in lines:
        assert 0.0 <= line["test_accuracy"] <= 100.0
        assert math.isfinite(line["loss_student"]) and (zskd or math.isfinite(line["loss_generator"]))
        assert line["samples_per_s"] > 0 and line["step_time_s"] > 0
        assert "peak_memory_mb" not in line  # device memory is logged on CUDA only
    if METHODS[method].student_update == "lrwa":
        # replay starts after the first push (end of epoch 1): the alignment cosine is logged from then on
        assert -1.0 <= lines[1]["grad_cos"] <= 1.0 and "loss_ret" in lines[1]
    config = json.loads((tmp_path / method / "config.json").read_text())
    assert config["method"] == method and config["epochs"] == 2 and config["dataset"] == "digits"
    assert config["config"]["schedule"]["batch_size"] == (20 if zskd else 24) and "torch" in config["versions"]
    assert (tmp_path / method / "checkpoint.pt").is_file() and (tmp_path / method / "student.pt").is_file()
    assert any((tmp_path / method / "tb").iterdir())


# The augmented run draws its random maps from the run's generator: a resume must restore that too.
AUGMENTED = {"augment.shift": 2, "augment.rotate": 15.0, "augment.flip": True}


@pytest.mark.parametrize(
    ("method", "extra"), [("lrwa-mb", {}), ("pre-dfkd", {}), ("mb-dfkd", AUGMENTED)], ids=["lrwa-mb", "pre-dfkd", "aug"]
)
def test_resume_reproduces_an_uninterrupted_run(method, extra, tmp_path, lenet_teacher):
    extra = {"method": method, "schedule.epochs": 4, **extra}
    full = _run(tmp_path / "full", lenet_teacher, **extra)
    first = _run(tmp_path / "split", lenet_teacher, **extra, **{"runtime.stop_after": 2})
    assert len(first) == 2
    resumed = _run(tmp_path / "split", lenet_teacher, resume=True, **extra, **{"runtime.stop_after": 0})
    key = ("epoch", "test_accuracy", "loss_student", "loss_generator")
    assert [[r[k] for k in key] for r in resumed] == [[r[k] for k in key] for r in full]
    assert [line["epoch"] for line in _lines(tmp_path / "split")] == [1, 2, 3, 4]


def test_ctrl_c_leaves_a_mid_epoch_checkpoint_that_resumes_exactly(tmp_path, lenet_teacher, monkeypatch):
    """Every logged value comes back, the diagnostics included: the epoch's class counts are in the checkpoint."""
    extra = DIAGNOSED_LRWA_RUN
    full = _run(tmp_path / "full", lenet_teacher, **extra)

    original = Trainer._iteration
    calls = {"n": 0}

    def interrupted_iteration(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, iteration 2 of 3
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_iteration", interrupted_iteration)
    with pytest.raises(Interrupted, match="--resume"):
        _run(tmp_path / "split", lenet_teacher, **extra)
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["iteration"]) == (1, 2)
    monkeypatch.setattr(Trainer, "_iteration", original)
    resumed = _run(tmp_path / "split", lenet_teacher, resume=True, **extra)
    assert without_timing(resumed) == without_timing(full)
    assert "gen_grad_norm_adv" in full[-1] and sum(full[1]["gen_class_hist"]) == 3 * 2 * 24


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, lenet_teacher, monkeypatch):
    out = tmp_path / "run"
    _run(out, lenet_teacher, **{"schedule.epochs": 2, "runtime.stop_after": 1})
    good = (out / "checkpoint.pt").read_bytes()
    original = StudentUpdate.step
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        aux = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            aux["loss_student"] = aux["loss_student"] * float("nan")
        return aux

    monkeypatch.setattr(StudentUpdate, "step", poisoned)
    with pytest.raises(NonFiniteLossError) as error:
        _run(out, lenet_teacher, resume=True, **{"schedule.epochs": 2})
    message = str(error.value)
    assert "loss_student became nan" in message and "step" in message and "\n" not in message
    assert f"the last good checkpoint {out / 'checkpoint.pt'} (epoch 1) is kept" in message
    assert (out / "checkpoint.pt").read_bytes() == good
    assert [line["epoch"] for line in _lines(out)] == [1]


def _cli(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _tiny_flags(out, teacher, *extra):
    return ["train", "--out", str(out), "--teacher", str(teacher), *TINY_TRAIN_FLAGS, *extra]


def test_an_out_dir_holding_another_run_is_not_overwritten(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    assert _cli(_tiny_flags(out, lenet_teacher)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = _cli(_tiny_flags(out, lenet_teacher, "--method", "dfad"))
    assert result.exit_code == 2 and "--force" in result.output and "different run" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _cli(_tiny_flags(out, lenet_teacher, "--method", "dfad", "--force")).exit_code == 0
    assert json.loads((out / "config.json").read_text())["method"] == "dfad"


@pytest.mark.parametrize("problem", ["class-count", "missing", "corrupt", "unknown-student"])
def test_bad_input_is_one_line_and_touches_nothing(problem, tmp_path, lenet_teacher):
    out = tmp_path / "run"
    assert _cli(_tiny_flags(out, lenet_teacher)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    teacher, extra = lenet_teacher, ["--force"]
    if problem == "class-count":
        teacher = write_teacher(tmp_path / "five.pt", "lenet5", num_classes=5)
    elif problem == "missing":
        teacher = tmp_path / "nope.pt"
    elif problem == "corrupt":
        teacher = tmp_path / "corrupt.pt"
        teacher.write_bytes(lenet_teacher.read_bytes()[:200])
    else:
        extra += ["--student", "resnet9000"]
    result = CliRunner().invoke(cli, _tiny_flags(out, teacher, *extra))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    if problem == "class-count":
        assert "5" in errors[0] and "10" in errors[0]
    if problem == "unknown-student":
        assert "resnet9000" in errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_refuses_changed_settings_and_missing_checkpoint(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    _run(out, lenet_teacher, **{"schedule.epochs": 1})
    with pytest.raises(ConfigError, match="student.lr"):
        _run(out, lenet_teacher, resume=True, **{"schedule.epochs": 1, "student.lr": 0.5})
    # The cosine schedule spans the epochs the run started with: a resume may neither extend nor cut it.
    with pytest.raises(ConfigError, match="schedule.epochs=1 cannot change to 2"):
        _run(out, lenet_teacher, resume=True, **{"schedule.epochs": 2})
    with pytest.raises(ConfigError, match="does not exist"):
        _run(tmp_path / "elsewhere", lenet_teacher, resume=True)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged"):
        _run(out, lenet_teacher, resume=True, **{"schedule.epochs": 1})


def test_bf16_autocast_run_is_finite_and_close_to_fp32(tmp_path, lenet_teacher):
    extra = {"method": "lrwa-mb", "schedule.epochs": 2}
    fp32 = _run(tmp_path / "fp32", lenet_teacher, **extra)
    bf16 = _run(tmp_path / "bf16", lenet_teacher, **extra, **{"runtime.amp": "bf16"})
    for a, b in zip(fp32, bf16):
        assert math.isfinite(b["loss_student"]) and math.isfinite(b["loss_generator"])
        # bf16 keeps ~3 significant digits; over a few steps the losses drift apart by a few percent at most
        assert b["loss_student"] == pytest.approx(a["loss_student"], rel=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_cuda_run_is_finite_and_logs_its_peak_memory(tmp_path, lenet_teacher, amp):
    """On the GPU: channels_last student, fused optimisers, the Triton MAE, and for fp16 both GradScalers."""
    extra = {"method": "lrwa-mb", "runtime.device": "cuda", "runtime.amp": amp}
    _run(tmp_path, lenet_teacher, **extra)
    config = train_config("digits", tiny_overrides(tmp_path, lenet_teacher, **extra))
    info = dataset_info("digits")
    student = build_model(config.student.arch, info.num_classes, in_channels=info.channels, image_size=info.image_size)
    parameters = sum(p.numel() for p in student.parameters())
    for line in _lines(tmp_path):
        assert math.isfinite(line["loss_student"]) and math.isfinite(line["loss_generator"])
        assert 0.0 <= line["test_accuracy"] <= 100.0
        # At least the student, its gradients and its momentum (float32) were on the device during training.
        assert line["peak_memory_mb"] >= 3 * 4 * parameters / 2**20
    assert -1.0 <= _lines(tmp_path)[1]["grad_cos"] <= 1.0  # the LRWA step ran in epoch 2


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path, lenet_teacher):
    extra = {"method": "lrwa-mb", "schedule.epochs": 2}
    eager = _run(tmp_path / "eager", lenet_teacher, **extra)
    compiled = _run(tmp_path / "compiled", lenet_teacher, **extra, **{"runtime.compile": True})
    for a, b in zip(eager, compiled):
        assert b["loss_student"] == pytest.approx(a["loss_student"], rel=1e-3)
        assert b["loss_generator"] == pytest.approx(a["loss_generator"], rel=1e-3)
