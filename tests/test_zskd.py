"""ZSKD (``--method zskd``): class similarities, Dirichlet targets, the impression step, the transfer loss, and
whole runs: a tiny epoch, a resume after a kill, a teacher without a last nn.Linear refused."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from foreign_teachers import LoopingCNN, user_cnn

from conftest import TINY_TRAIN_FLAGS, ZSKD_TINY, tiny_overrides, without_timing
from fastlrwa.cli import cli
from fastlrwa.commands.train import run_train
from fastlrwa.config.presets import TRAIN_PRESETS, train_config
from fastlrwa.config.validate import validate_train_config
from fastlrwa.data import dataset_info
from fastlrwa.errors import ConfigError
from fastlrwa.losses import distill
from fastlrwa.losses.impressions import (
    CONCENTRATION_FLOOR,
    class_similarity,
    dirichlet_targets,
    impression_classes,
    impression_step,
    start_state,
)
from fastlrwa.losses.options import ImpressionOptions
from fastlrwa.progress import EpochProgress
from fastlrwa.trainer.impressions import synthesise

ZSKD_TINY_FLAGS = ["--method", "zskd", "--gen-steps", "0", "--impressions", "60", "--impression-steps", "3"]


def test_class_similarity_is_the_row_normalised_cosine():
    torch.manual_seed(3)
    weight = torch.randn(7, 13)
    got = class_similarity(weight)
    w = weight.double().tolist()
    for i in range(7):
        cosines = []
        for j in range(7):
            dot = sum(a * b for a, b in zip(w[i], w[j]))
            cosines.append(dot / math.sqrt(sum(a * a for a in w[i]) * sum(b * b for b in w[j])))
        low, high = min(cosines), max(cosines)
        expected = [(c - low) / (high - low) for c in cosines]
        assert got[i].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(got.diagonal(), torch.ones(7))  # a class is most similar to itself


def test_dirichlet_targets_sum_to_one_and_have_the_concentrations_mean():
    torch.manual_seed(5)
    similarity = class_similarity(torch.randn(5, 9))
    classes, scales = impression_classes(5 * 2 * 4000, 5, (1.0, 0.1))
    assert classes.tolist()[:8000] == [0] * 8000 and scales[:4000].eq(1.0).all() and scales[4000:8000].eq(0.1).all()
    targets = dirichlet_targets(similarity, classes, scales, seed=11)
    assert targets.min() >= 0 and torch.allclose(targets.sum(dim=1), torch.ones(len(targets)), atol=1e-5)
    for k in range(5):
        for beta, rows in ((1.0, slice(8000 * k, 8000 * k + 4000)), (0.1, slice(8000 * k + 4000, 8000 * (k + 1)))):
            alpha = beta * similarity[k].double() + CONCENTRATION_FLOOR
            # E[y] = alpha / sum(alpha); the standard error of a mean of 4000 draws is below 0.008 here
            assert torch.allclose(targets[rows].double().mean(dim=0), alpha / alpha.sum(), atol=0.03)
    assert torch.equal(dirichlet_targets(similarity, classes, scales, seed=11), targets)


class _TinyTeacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 5 * 5, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def test_impression_step_is_adam_on_the_float64_gradient_then_a_per_image_rescale():
    torch.manual_seed(7)
    teacher = _TinyTeacher().eval().requires_grad_(False)
    pixels = torch.rand(5, 2, 7, 7)
    targets = torch.distributions.Dirichlet(torch.rand(5, 4) + 0.1).sample()
    mean, std = torch.tensor([0.3, 0.6]).view(1, 2, 1, 1), torch.tensor([0.2, 0.4]).view(1, 2, 1, 1)
    temperature, lr = 3.0, 0.05
    state = start_state(pixels)
    for _ in range(2):
        state, _ = impression_step(teacher, state, targets, mean, std, temperature=temperature, lr=lr)

    teacher64 = _TinyTeacher().double().eval().requires_grad_(False)
    teacher64.load_state_dict(teacher.state_dict())
    x = pixels.double().clone().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=lr)
    for _ in range(2):
        logits = teacher64((x - mean.double()) / std.double()) / temperature
        log_softmax = logits - logits.exp().sum(dim=1, keepdim=True).log()
        loss = -(targets.double() * log_softmax).sum()
        adam.zero_grad()
        loss.backward()
        adam.step()
        with torch.no_grad():
            flat = x.view(5, -1)
            low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
            flat.copy_((flat - low) / (high - low))
    assert torch.allclose(state.pixels.double(), x.detach(), atol=1e-5)
    assert state.pixels.amin(dim=(1, 2, 3)).abs().max() < 1e-6
    assert (state.pixels.amax(dim=(1, 2, 3)) - 1).abs().max() < 1e-6


def test_impressions_do_not_depend_on_the_chunk_size():
    torch.manual_seed(1)
    teacher = _TinyTeacher().eval().requires_grad_(False)
    shape = {"num_classes": 4, "channels": 2, "image_size": 7, "mean": (0.3, 0.6), "std": (0.2, 0.4)}
    info = dataclasses.replace(dataset_info("digits"), **shape)
    runs = [
        synthesise(
            teacher,
            teacher.fc.weight,
            info,
            ImpressionOptions(count=24, steps=3, chunk=chunk, temperature=5.0),
            seed=2,
            device=torch.device("cpu"),
            progress=EpochProgress(None, None),
        )
        for chunk in (7, 24)
    ]
    assert runs[0].shape == (24, 2, 7, 7) and torch.allclose(runs[0], runs[1], atol=1e-6)


def test_soft_cross_entropy_is_hintons_kd_loss_written_out():
    torch.manual_seed(4)
    student, teacher, temperature = torch.randn(6, 5), torch.randn(6, 5) * 3, 7.0
    s, t = student.double().tolist(), teacher.double().tolist()
    total = 0.0
    for row_s, row_t in zip(s, t):
        p = [math.exp(v / temperature) for v in row_t]
        q = [math.exp(v / temperature) for v in row_s]
        total += -sum(pi / sum(p) * math.log(qi / sum(q)) for pi, qi in zip(p, q))
    expected = total / 6 * temperature**2
    assert distill.soft_cross_entropy(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)


def _run(out, teacher, *, resume=False, **extra):
    overrides = tiny_overrides(out, teacher, **{**ZSKD_TINY, **extra})
    return run_train(train_config("digits", overrides), resume=resume, explicit=set(overrides))


def test_a_cli_run_of_one_epoch_trains_the_student_on_kept_impressions(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--teacher", str(lenet_teacher), *TINY_TRAIN_FLAGS, *ZSKD_TINY_FLAGS]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "impressions 60/60" in result.output
    [line] = [json.loads(text) for text in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= line["test_accuracy"] <= 100.0 and math.isfinite(line["loss_student"])
    assert "loss_generator" not in line
    saved = torch.load(out / "impressions.pt", weights_only=True)
    assert saved["pixels"].shape == (60, 1, 32, 32) and 0 <= saved["pixels"].min() and saved["pixels"].max() <= 1
    assert json.loads((out / "config.json").read_text())["config"]["student"]["optimizer"] == "adam"


def test_resume_after_a_stop_reads_the_impressions_back_and_continues_identically(tmp_path, lenet_teacher, monkeypatch):
    full = _run(tmp_path / "full", lenet_teacher, **{"schedule.epochs": 3})
    first = _run(tmp_path / "split", lenet_teacher, **{"schedule.epochs": 3, "runtime.stop_after": 1})
    assert len(first) == 1
    kept = (tmp_path / "split" / "impressions.pt").read_bytes()

    def no_synthesis(*args, **kwargs):
        raise AssertionError("a resumed run synthesised its impressions again")

    monkeypatch.setattr("fastlrwa.trainer.impressions.synthesise", no_synthesis)
    resumed = _run(tmp_path / "split", lenet_teacher, resume=True, **{"schedule.epochs": 3, "runtime.stop_after": 0})
    assert without_timing(resumed) == without_timing(full)
    assert (tmp_path / "split" / "impressions.pt").read_bytes() == kept


def test_a_teacher_without_a_last_linear_layer_is_refused_in_one_line(tmp_path):
    # A TorchScript teacher torch cannot convert to an exported program: no module to read the head from.
    path = tmp_path / "looping_script.pt"
    torch.jit.save(torch.jit.script(user_cnn(cls=LoopingCNN)), str(path))
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--teacher", str(path), *TINY_TRAIN_FLAGS, *ZSKD_TINY_FLAGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "last nn.Linear" in errors[0] and "--teacher-factory" in errors[0]
    assert not (out / "impressions.pt").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"impressions.count": 61}, "multiple of 20"),
        ({"schedule.gen_steps": 1}, "trains no generator"),
        ({"impressions.betas": "1.0,-2"}, "positive numbers"),
    ],
)
def test_bad_zskd_settings_are_named(tmp_path, lenet_teacher, extra, named):
    with pytest.raises(ConfigError, match=named):
        _run(tmp_path / "run", lenet_teacher, **extra)


@pytest.mark.parametrize("preset", sorted(TRAIN_PRESETS))
def test_every_preset_runs_zskd_with_its_transfer_settings(preset):
    config = train_config(preset, {"method": "zskd"})
    validate_train_config(config)
    assert config.schedule.gen_steps == 0 and config.student.optimizer == "adam" and config.kd.temperature == 20.0
    s = config.schedule
    # an epoch is about one pass over the impressions
    assert 0.9 < s.iters_per_epoch * s.student_steps * s.batch_size / config.impressions.count < 1.1
