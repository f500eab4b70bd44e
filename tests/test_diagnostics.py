"""The plateau diagnostics: agreement, class entropy, per-term generator gradient norms, the sample grid,
their place in metrics.jsonl, TensorBoard and `fastlrwa report`, and exact resume with them on.

References are written out here: the agreement and entropy formulas, each loss term in float64 plain autograd.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from conftest import DIAGNOSED_LRWA_RUN, tiny_overrides
from fastlrwa.cli import cli
from fastlrwa.commands.train import run_train
from fastlrwa.config.presets import train_config
from fastlrwa.losses.options import GeneratorLossOptions
from fastlrwa.models import build_generator, build_model
from fastlrwa.trainer.diagnostics import argmax_agreement, normalised_entropy
from fastlrwa.trainer.epoch_stats import EpochStats
from fastlrwa.updates.generator_update import GeneratorUpdate


def _run(out, teacher, *, resume=False, **extra):
    overrides = tiny_overrides(out, teacher, **extra)
    return run_train(train_config("digits", overrides), resume=resume, explicit=set(overrides))


@pytest.mark.parametrize("rows,classes", [(37, 7), (1, 3), (129, 11)])
def test_agreement_and_entropy_match_their_formulas(rows, classes):
    student, teacher = torch.randn(rows, classes), torch.randn(rows, classes)
    # A share of rows made to agree, so the fraction is not near 1/classes by chance alone.
    teacher[: rows // 3] = student[: rows // 3] * 2.0
    same = sum(
        int(
            max(range(classes), key=lambda c: student[i, c].item())
            == max(range(classes), key=lambda c: teacher[i, c].item())
        )
        for i in range(rows)
    )
    assert argmax_agreement(student, teacher).item() == pytest.approx(same / rows, abs=1e-7)

    counts = torch.randint(0, 50, (classes,)).tolist()
    counts[0] += 1
    total = sum(counts)
    expected = -sum(c / total * math.log(c / total) for c in counts if c) / math.log(classes)
    assert normalised_entropy(counts) == pytest.approx(expected, rel=1e-12)
    assert normalised_entropy([5] * classes) == pytest.approx(1.0)
    assert normalised_entropy([0] * (classes - 1) + [9]) == 0.0


def test_epoch_stats_counts_classes_on_the_device_and_keeps_them_in_its_state():
    stats = EpochStats(torch.device("cpu"), ())
    batches = [torch.randint(0, 7, (n,)) for n in (13, 5, 21)]
    for bins in batches:
        stats.count("hist", bins, 7)
    expected = [sum(int((bins == k).sum()) for bins in batches) for k in range(7)]
    assert stats.counters()["hist"].tolist() == expected
    restored = EpochStats(torch.device("cpu"), ())
    restored.load_state_dict(stats.state_dict())
    assert restored.counters()["hist"].tolist() == expected
    restored.reset()
    assert restored.counters() == {}


def _terms_float64(objective, generator, teacher, student, z, weights):
    """Each weighted generator-loss term written out, on the generated batch."""
    images = generator(z)
    logits, features = teacher(images, return_features=True)
    terms = {}
    if objective == "dafl":
        terms["oh"] = weights.oh * F.cross_entropy(logits, logits.argmax(dim=1))
        terms["act"] = -weights.a * features.abs().mean()
        p_bar = logits.softmax(dim=1).mean(dim=0)
        terms["ie"] = weights.ie * (p_bar * p_bar.log()).sum() / math.log(weights.entropy_log_base)
    else:  # dfad
        terms["adv"] = -weights.adv * (student(images) - logits).abs().mean()
    return terms


@pytest.mark.parametrize("objective", ["dafl", "dfad"])
def test_term_gradient_norms_match_plain_autograd_in_float64(objective):
    torch.manual_seed(torch.randint(0, 2**31, ()).item())
    generator = build_generator(latent_dim=7, channels=1, image_size=32, width=6).double().train()
    teacher = build_model("lenet5", 5, in_channels=1, image_size=32).double().eval().requires_grad_(False)
    student = build_model("lenet5_half", 5, in_channels=1, image_size=32).double().train()
    weights = GeneratorLossOptions(oh=0.7, a=0.3, ie=2.5, adv=1.3)
    z = torch.randn(9, 7, dtype=torch.float64)
    reference_generator = copy.deepcopy(generator)  # the step moves BatchNorm statistics and spectral-norm vectors
    params = [p for p in reference_generator.parameters() if p.requires_grad]
    expected = {}
    for name, term in _terms_float64(
        objective, reference_generator, teacher, copy.deepcopy(student), z, weights
    ).items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        expected[name] = math.sqrt(sum(float((g**2).sum()) for g in grads if g is not None))

    update = GeneratorUpdate(
        generator,
        teacher,
        student,
        objective=objective,
        weights=weights,
        optimizer=torch.optim.Adam(generator.parameters(), lr=1e-3),
        autocast_dtype=None,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        compile=False,
        grad_norm_every=3,
    )
    logged = update.step(z, index=6).logged
    assert {key for key in logged if key.startswith("gen_grad_norm_")} == {f"gen_grad_norm_{n}" for n in expected}
    for name, value in expected.items():
        assert value > 0
        assert logged[f"gen_grad_norm_{name}"].item() == pytest.approx(value, rel=1e-9)
    assert not any(key.startswith("gen_grad_norm_") for key in update.step(z, index=4).logged)


def test_a_run_logs_the_diagnostics_and_the_report_shows_them(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    records = _run(
        out, lenet_teacher, method="mb-dfkd", **{"diagnostics.grad_norm_every": 1, "diagnostics.sample_grid": 5}
    )
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == records
    per_epoch = 2 * 2 * 24  # iterations x student steps x batch
    for line in lines:
        assert 0.0 <= line["agree_gen"] <= 1.0 and 0.0 <= line["agree_test"] <= 1.0
        hist = line["gen_class_hist"]
        assert len(hist) == 10 and sum(hist) == per_epoch
        expected = -sum(c / per_epoch * math.log(c / per_epoch) for c in hist if c) / math.log(10)
        assert line["gen_class_entropy"] == pytest.approx(expected, rel=1e-12)
        for term in ("adv", "oh", "act", "ie"):
            assert line[f"gen_grad_norm_{term}"] > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "histograms": 0}).Reload()
    images = events.Images("generated_samples")
    assert [image.step for image in images] == [1, 2]
    # 5 samples of 32 px, 3 per row, 2 px padding: 3 x 2 cells.
    assert (images[0].width, images[0].height) == (3 * 34 + 2, 2 * 34 + 2)
    assert [h.histogram_value.num for h in events.Histograms("gen_class_hist")] == [per_epoch, per_epoch]
    assert "agree_test" in events.Tags()["scalars"]

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((out / "config.json").read_text())
    stripped = [{k: v for k, v in line.items() if not k.startswith(("agree", "gen_class"))} for line in lines]
    (old / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in stripped))
    result = CliRunner().invoke(cli, ["report", str(out), str(old)])
    assert result.exit_code == 0, result.output
    section = result.output.split("# Diagnostics per epoch", 1)[1]
    assert str(out) in section and str(old) not in section
    assert "| Epoch | Acc (%) | agree gen | agree test | agree held-out | class entropy |" in section
    assert (
        f"| 2 | {lines[1]['test_accuracy']:.2f} | {lines[1]['agree_gen']:.3f} | {lines[1]['agree_test']:.3f} | "
        f"{lines[1]['agree_heldout']:.3f} | {lines[1]['gen_class_entropy']:.3f} |" in section
    )


def test_report_samples_writes_the_labelled_grid(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    _run(out, lenet_teacher, method="dfad", **{"schedule.epochs": 1, "diagnostics.sample_grid": 7})
    png = tmp_path / "grids" / "samples.png"
    result = CliRunner().invoke(cli, ["report", str(out), "--samples", str(png)])
    assert result.exit_code == 0, result.output
    with Image.open(png) as image:
        # 7 samples, 3 per row -> 3 rows; digits' 32 px samples enlarged to 64 px, 2 px padding.
        assert image.format == "PNG" and image.size == (3 * 66 + 2, 3 * 66 + 2)
        # The labels are drawn in yellow over the samples (grey scale otherwise).
        pixels = image.convert("RGB").tobytes()
        assert any(r > 200 and g > 200 and b < 50 for r, g, b in zip(pixels[0::3], pixels[1::3], pixels[2::3]))

    refused = CliRunner().invoke(cli, ["report", str(out), str(out), "--samples", str(tmp_path / "two.png")])
    assert refused.exit_code != 0 and "pass one run directory with --samples" in refused.output
    wrong = CliRunner().invoke(cli, ["report", str(out), "--samples", str(tmp_path / "grid.jpg")])
    assert wrong.exit_code != 0 and ".png" in wrong.output
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "grid.jpg").exists()


def test_diagnostics_draw_nothing_from_the_training_stream(tmp_path, lenet_teacher):
    """A run without them trains the same (their exact resume: tests/test_trainer.py)."""
    extra = DIAGNOSED_LRWA_RUN
    full = _run(tmp_path / "full", lenet_teacher, **extra)
    plain = _run(
        tmp_path / "plain", lenet_teacher, **{**extra, "diagnostics.grad_norm_every": 0, "diagnostics.sample_grid": 0}
    )
    key = ("test_accuracy", "loss_student", "agree_test", "gen_class_hist")
    assert [[r[k] for k in key] for r in plain] == [[r[k] for k in key] for r in full]
    # The measured steps log more names, so their losses sit in another table and are summed in another order.
    assert [r["loss_generator"] for r in plain] == pytest.approx([r["loss_generator"] for r in full], rel=1e-6)
