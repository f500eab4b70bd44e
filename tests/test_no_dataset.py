"""A run with no dataset named: the teacher's input described by --num-classes, --image-size and --in-channels,
checked once in the config layer, and distilled end to end on a labelled test set of the user's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from foreign_teachers import save_three_ways, user_cnn

from conftest import TINY_TRAIN_FLAGS
from fastlrwa.cli import cli
from fastlrwa.config.input_space import NO_DATASET, run_input
from fastlrwa.config.presets import train_config
from fastlrwa.config.validate import validate_train_config
from fastlrwa.errors import ConfigError
from fastlrwa.models import load_checkpoint_with_meta

INPUT = {"data.num_classes": 10, "data.image_size": 32, "data.in_channels": 1}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    model = user_cnn(seed=5)
    return model, save_three_ways(model, tmp_path_factory.mktemp("teacher"))["torchscript"]


def test_the_input_flags_drop_the_presets_dataset_and_describe_the_input():
    config = train_config(
        None, {**INPUT, "data.num_classes": 7, "teacher.path": "t.pt", "teacher.mean": "0.25", "teacher.std": "0.5"}
    )
    assert config.data.dataset is None
    info = run_input(config.data, config.teacher)
    assert (info.name, info.num_classes, info.channels, info.image_size) == (NO_DATASET, 7, 1, 32)
    assert (info.mean, info.std) == ((0.25,), (0.5,))
    assert info.class_names == tuple(str(k) for k in range(7))


def test_without_a_teacher_normalisation_the_pixels_are_taken_as_they_are():
    config = train_config(None, {**INPUT, "data.in_channels": 3, "teacher.path": "t.pt"})
    info = run_input(config.data, config.teacher)
    assert (info.mean, info.std) == ((0.0,) * 3, (1.0,) * 3)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({**INPUT, "data.dataset": "digits"}, "describes a teacher's input where no dataset is named"),
        ({"data.num_classes": 10, "data.image_size": 32}, "needs data.in_channels too"),
        ({**INPUT, "data.image_size": 30}, "multiple of 4"),
        ({**INPUT, "data.num_classes": 1}, ">= 2"),
        ({**INPUT, "teacher.path": None}, "pass --teacher FILE"),
        ({**INPUT, "data.test_data": None, "method": "zskd"}, "trains no generator, so with no dataset and no test"),
    ],
)
def test_a_bad_input_description_is_refused_in_the_config_layer(overrides, message):
    base = {"teacher.path": "t.pt", "data.test_data": "mine.npz"}
    config = train_config(None, {**base, **overrides})
    with pytest.raises(ConfigError, match=message):
        validate_train_config(config)


def _test_set(path, count=19, seed=17):
    rng = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 32, 32), generator=rng, dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,), generator=rng)
    np.savez(path, x=images.numpy(), y=labels.numpy())
    return images, labels


def _args(tmp_path, teacher_path, *flags):
    return [
        "train",
        "--out",
        str(tmp_path / "run"),
        "--teacher",
        str(teacher_path),
        "--w-act",
        "0",
        "--teacher-mean",
        "0.4",
        "--teacher-std",
        "0.3",
        *TINY_TRAIN_FLAGS,
        *flags,
    ]


def test_a_run_with_no_dataset_distils_and_measures_on_the_users_test_set(teacher, tmp_path):
    model, path = teacher
    images, labels = _test_set(tmp_path / "mine.npz")
    flags = [
        "--num-classes",
        "10",
        "--image-size",
        "32",
        "--in-channels",
        "1",
        "--test-data",
        str(tmp_path / "mine.npz"),
    ]
    result = CliRunner().invoke(cli, _args(tmp_path, path, *flags))
    assert result.exit_code == 0, result.output
    record = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    # The run's normalisation is the teacher's: the student and the teacher see the same inputs.
    inputs = ((images.unsqueeze(1).double() / 255 - 0.4) / 0.3).float()
    student, _ = load_checkpoint_with_meta(tmp_path / "run" / "student.pt")
    with torch.no_grad():
        student_classes, teacher_classes = student.eval()(inputs).argmax(1), model(inputs).argmax(1)
    assert record["test_accuracy"] == pytest.approx(100 * (student_classes == labels).double().mean().item())
    assert record["agree_test"] == pytest.approx((student_classes == teacher_classes).double().mean().item())
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["dataset"] == NO_DATASET and recorded["config"]["data"]["dataset"] is None
    assert recorded["teacher_accuracy"] == pytest.approx(100 * (teacher_classes == labels).double().mean().item())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-classes", "7", "--image-size", "32"], "gives 10 logits per image, and --num-classes says 7; pass "),
        (["--num-classes", "10", "--image-size", "24"], "pass the --in-channels and --image-size it takes"),
        (["--num-classes", "10", "--image-size", "32", "--dataset", "digits"], "drop one of them"),
        (["--num-classes", "10", "--image-size", "30"], "multiple of 4"),
    ],
)
def test_the_command_line_answers_a_bad_input_description_in_one_line(teacher, tmp_path, flags, message):
    _, path = teacher
    _test_set(tmp_path / "mine.npz")
    flags = [*flags, "--in-channels", "1", "--test-data", str(tmp_path / "mine.npz")]
    result = CliRunner().invoke(cli, _args(tmp_path, path, *flags))
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
