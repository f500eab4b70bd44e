"""A run with no test data at all: it trains, logs the student-teacher agreement on a fixed held-out set of generated
samples (agree_heldout) instead of an accuracy, says that accuracy is not measured, reports, and resumes exactly,
after a SIGKILL too."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from foreign_teachers import save_three_ways, user_cnn

from conftest import TINY_TRAIN_FLAGS, without_timing
from fastlrwa.cli import cli
from fastlrwa.commands.report import run_report
from fastlrwa.models import build_generator, build_model, load_checkpoint_with_meta
from fastlrwa.trainer.diagnostics import SAMPLE_SEED_OFFSET
from fastlrwa.trainer.heldout import HELDOUT_SEED_OFFSET, HeldOutSamples

NO_DATA = ["--num-classes", "10", "--image-size", "32", "--in-channels", "1", "--w-act", "0"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    model = user_cnn(seed=11)
    return model, save_three_ways(model, tmp_path_factory.mktemp("teacher"))["torchscript"]


def _reference_agreement(latents, generator, student, teacher):
    """The formula written out: the fraction of the latents whose generated image the two classify alike, every
    image generated at once by an eval-mode copy of the generator."""
    generator, student = copy.deepcopy(generator).eval(), copy.deepcopy(student).eval()
    with torch.no_grad():
        images = generator(latents)
        same = student(images).argmax(dim=1) == teacher(images).argmax(dim=1)
    return same.sum().item() / latents.shape[0]


def test_the_heldout_agreement_is_the_fraction_of_fixed_latents_classified_alike():
    torch.manual_seed(3)
    generator = build_generator(latent_dim=12, channels=1, image_size=32, width=8).train()
    student = build_model("lenet5_half", 10, in_channels=1, image_size=32).train()
    teacher = user_cnn(seed=4)
    with torch.no_grad():  # running statistics of the generator's own, as training leaves them
        generator(torch.randn(64, 12))
    before = copy.deepcopy(generator.state_dict())
    rng_before = torch.get_rng_state()
    heldout = HeldOutSamples(12, seed=21, device=torch.device("cpu"), count=37, batch_size=10)
    value = heldout.agreement(generator, student, teacher)
    expected_latents = torch.randn(37, 12, generator=torch.Generator().manual_seed(21 + HELDOUT_SEED_OFFSET))
    assert torch.equal(heldout.latents, expected_latents)
    assert value == _reference_agreement(expected_latents, generator, student, teacher)
    # Drawing the set changes no state: the generator's weights, statistics and spectral-norm vectors, the modes,
    # the global random stream.
    assert all(torch.equal(before[key], tensor) for key, tensor in generator.state_dict().items())
    assert generator.training and student.training and not teacher.training
    assert torch.equal(torch.get_rng_state(), rng_before)
    # Fixed by the seed, and not the sample grid's latents.
    assert torch.equal(HeldOutSamples(12, seed=21, device=torch.device("cpu"), count=37).latents, heldout.latents)
    assert HELDOUT_SEED_OFFSET != SAMPLE_SEED_OFFSET


def _args(out, teacher_path, *extra):
    return [
        "train",
        "--out",
        str(out),
        "--teacher",
        str(teacher_path),
        "--teacher-mean",
        "0.4",
        "--teacher-std",
        "0.3",
        *NO_DATA,
        *TINY_TRAIN_FLAGS,
        *extra,
    ]


def _lines(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_with_no_test_data_trains_logs_the_heldout_agreement_and_reports(teacher, tmp_path):
    model, path = teacher
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, _args(out, path))
    assert result.exit_code == 0, result.output
    assert "no test data: accuracy not measured" in result.output
    assert "epoch 1/1  accuracy not measured" in result.output
    done = [line for line in result.output.splitlines() if line.startswith("done:")]
    assert len(done) == 1 and "accuracy not measured (no test data)" in done[0] and "agree_heldout" in done[0]
    (record,) = _lines(out)
    assert "test_accuracy" not in record and "agree_test" not in record
    # The logged agreement is the formula on the run's own held-out latents, through the generator it saved.
    config = json.loads((out / "config.json").read_text())
    assert config["teacher_accuracy"] is None and config["dataset"] == "custom"
    c = config["config"]
    generator = build_generator(
        latent_dim=c["generator"]["latent_dim"], channels=1, image_size=32, width=c["generator"]["width"]
    )
    generator.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["generator"])
    student, _ = load_checkpoint_with_meta(out / "student.pt")
    latents = torch.randn(
        1024, c["generator"]["latent_dim"], generator=torch.Generator().manual_seed(c["runtime"]["seed"] + 104729)
    )
    # The run's normalisation is the teacher's: the generated images go to the teacher as they are.
    assert record["agree_heldout"] == _reference_agreement(latents, generator, student, model)
    extra = torch.load(out / "student.pt", weights_only=True)["extra"]
    assert "test_accuracy" not in extra and extra["agree_heldout"] == record["agree_heldout"]

    report = run_report([out])
    row = next(line for line in report.markdown.splitlines() if line.startswith("| ") and "seed" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert "accuracy not measured" in cells[0]
    assert set(cells[1:-1]) == {"–"} and cells[-1] == f"{100 * record['agree_heldout']:.2f}"
    (entry,) = report.document["runs"]
    assert entry["accuracy_measured"] is False and entry["acc_max"] is None
    assert entry["agree_heldout"] == record["agree_heldout"]


def test_a_run_with_test_data_logs_the_heldout_agreement_beside_its_accuracy(teacher, tmp_path, lenet_teacher):
    result = CliRunner().invoke(
        cli, ["train", "--out", str(tmp_path / "run"), "--teacher", str(lenet_teacher)] + TINY_TRAIN_FLAGS
    )
    assert result.exit_code == 0, result.output
    (record,) = _lines(tmp_path / "run")
    assert 0.0 <= record["test_accuracy"] <= 100.0 and 0.0 <= record["agree_heldout"] <= 1.0
    report = run_report([tmp_path / "run"])
    assert report.document["runs"][0]["accuracy_measured"] is True
    assert ", accuracy not measured)" not in report.markdown


def _subprocess_args(out, teacher_path, epochs):
    return [
        sys.executable,
        "-m",
        "fastlrwa",
        *_args(out, teacher_path, "--epochs", str(epochs), "--iters-per-epoch", "3"),
    ]


def test_a_run_with_no_test_data_resumes_exactly_after_a_sigkill(teacher, tmp_path):
    _, path = teacher
    epochs = 4
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(_subprocess_args(tmp_path / "full", path, epochs), env=env, capture_output=True, timeout=600)
    assert full.returncode == 0, full.stderr.decode()
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _subprocess_args(killed, path, epochs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    # Killed as soon as its first checkpoint is on disk: mid-run, with no chance to save or clean up.
    while not (killed / "checkpoint.pt").is_file():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert len(_lines(killed)) < epochs
    resumed = subprocess.run(
        [*_subprocess_args(killed, path, epochs), "--resume"], env=env, capture_output=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert without_timing(_lines(killed)) == without_timing(_lines(tmp_path / "full"))
    assert [line["epoch"] for line in _lines(killed)] == list(range(1, epochs + 1))
    assert all("agree_heldout" in line and "test_accuracy" not in line for line in _lines(killed))
