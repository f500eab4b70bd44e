"""What the error lines say: every flag they name exists on the command that printed them (or on the command
they quote), a NaN names only files that exist, and a teacher or checkpoint from another dataset is refused."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from conftest import TINY_TRAIN_FLAGS, write_teacher
from fastlrwa.cli import cli
from fastlrwa.models import build_model

PACKAGE = Path(__file__).resolve().parents[1] / "fastlrwa"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# `fastlrwa CMD ...` quoted in a message: its flags are CMD's, up to the closing backtick (or the end).
QUOTED_COMMAND = re.compile(r"fastlrwa (\w+)([^`]*)")
# Flags of other programs that messages may quote (torchrun's, in the distributed hints).
FOREIGN_FLAGS = {"--nproc", "--standalone"}


def command_flags(name: str) -> set[str]:
    command = cli.commands[name]
    return {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    } | {"--help"}


def flags_by_command(command: str, message: str) -> list[tuple[str, str]]:
    """(command, flag) for every flag in ``message`` printed by ``command``."""
    pairs = []
    for match in QUOTED_COMMAND.finditer(message):
        pairs += [(match.group(1), flag) for flag in FLAG.findall(match.group(2))]
    rest = QUOTED_COMMAND.sub("", message)
    return pairs + [(command, flag) for flag in FLAG.findall(rest)]


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code != 0 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("messages")
    teacher = write_teacher(root / "teacher.pt", "lenet5")
    bare = root / "bare.pt"
    torch.manual_seed(0)
    torch.save(build_model("lenet5", 10, in_channels=1).state_dict(), bare)
    pickled = root / "pickled.pt"
    torch.save(build_model("lenet5", 10, in_channels=1), pickled)
    finished = root / "finished"
    result = _invoke("train", "--out", finished, "--teacher", teacher, *TINY_TRAIN_FLAGS)
    assert result.exit_code == 0, result.output
    not_a_folder = root / "file.txt"
    not_a_folder.write_text("")
    return {
        "root": root,
        "teacher": teacher,
        "mnist_teacher": write_teacher(root / "mnist.pt", "lenet5", "mnist"),
        "bare": bare,
        "pickled": pickled,
        "finished": finished,
        "file": not_a_folder,
    }


# Each row triggers one error: (command line with {placeholders} for files, what the message must contain).
TRIGGERS = [
    ("train --teacher {bare} --out {root}/a", "--teacher-arch"),
    ("train --teacher {bare} --teacher-arch resnet18 --out {root}/a", "--teacher-arch"),
    ("train --teacher {teacher} --teacher-arch resnet18 --out {root}/a", "--teacher-arch"),
    ("train --teacher {pickled} --out {root}/a", "--trust-pickle"),
    ("train --teacher {root}/missing.pt --out {root}/a", "--teacher"),
    ("train --amp-dtype fp16 --device cpu --teacher {teacher} --out {root}/a", "--amp-dtype fp16"),
    ("train --epochs 0 --teacher {teacher} --out {root}/a", "--epochs 0"),
    ("train --batch-size 4 --teacher {teacher} --out {root}/a", "--memory-slot-size"),
    ("train --gen-steps 0 --teacher {teacher} --out {root}/a", "--gen-steps 0"),
    ("train --dataset cifar10 --out {root}/a", "fastlrwa pretrain --dataset cifar10"),
    ("train --dataset digits --teacher {mnist_teacher} --out {root}/a", "--cross-dataset"),
    ("train --resume --out {root}/nothing-here --teacher {teacher}", "--resume"),
    ("train --resume --out {finished} --teacher {teacher} --epochs 3", "--epochs 1 cannot change to 3"),
    ("train --resume --out {finished} --teacher {teacher} --epochs 1 --lr-student 0.2", "--lr-student"),
    ("train --out {finished} --teacher {teacher} --epochs 1", "--force"),
    ("train --out {file} --teacher {teacher}", "--out"),
    ("train --resume --teacher {teacher}", "--out"),
    ("evaluate --checkpoint {bare} --arch lenet5", "--dataset"),
    ("evaluate --checkpoint {bare} --dataset digits", "--arch"),
    ("evaluate --checkpoint {teacher} --arch resnet18", "--arch"),
    ("evaluate --checkpoint {pickled} --dataset digits", "--trust-pickle"),
    ("evaluate --checkpoint {teacher} --dataset mnist", "--cross-dataset"),
    ("export --checkpoint {bare} --out {root}/export", "--arch"),
    ("export --checkpoint {teacher} --out {file}", "--out"),
    ("pretrain --dataset digits --epochs 0 --out {root}/t", "--epochs 0"),
    ("pretrain --dataset digits --amp-dtype fp16 --device cpu --out {root}/t", "--amp-dtype"),
    ("pretrain --dataset digits --out {file}", "--out"),
    ("report {root}/nothing-here", ""),
]


@pytest.mark.parametrize("line, expected", TRIGGERS, ids=[row[0].split(" {")[0] for row in TRIGGERS])
def test_every_flag_an_error_names_belongs_to_its_command(line, expected, files):
    args = [part.format(**files) for part in line.split()]
    result = _invoke(*args)
    message = _error_line(result)
    assert expected in message
    named = flags_by_command(args[0], message)
    assert all(flag in command_flags(command) for command, flag in named), (named, message)


def test_every_flag_written_in_the_package_is_some_command_s_flag():
    """A backstop for messages no trigger above reaches: no string in the package names a flag no command has."""
    known = set().union(*(command_flags(name) for name in cli.commands)) | FOREIGN_FLAGS
    unknown = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in set(FLAG.findall(node.value)) - known:
                    unknown.setdefault(flag, []).append(path.name)
    assert not unknown


def test_a_nan_in_the_first_epoch_names_no_checkpoint_that_does_not_exist(files):
    out = files["root"] / "nan"
    result = _invoke(
        "train",
        "--out",
        out,
        "--teacher",
        files["teacher"],
        "--lr-student",
        "1e12",
        *TINY_TRAIN_FLAGS,
        "--epochs",
        "3",
        "--iters-per-epoch",
        "3",
        "--student-steps",
        "2",
    )
    assert result.exit_code == 3
    message = _error_line(result)
    assert "(epoch 1," in message and ("became nan" in message or "became inf" in message)
    assert "nothing to resume" in message and not (out / "checkpoint.pt").exists()
    for path in re.findall(r"(/\S+\.pt)\b", message):
        assert Path(path).exists(), message


def test_resume_keeps_the_epochs_and_a_finished_run_has_nothing_to_train(files):
    config_before = (files["finished"] / "config.json").read_bytes()
    refused = _invoke("train", "--resume", "--out", files["finished"], "--teacher", files["teacher"], "--epochs", "2")
    assert refused.exit_code == 2 and "--stop-after" in _error_line(refused)
    again = _invoke(
        "train", "--resume", "--out", files["finished"], "--teacher", files["teacher"], "--epochs", "1", "--no-progress"
    )
    assert again.exit_code == 0 and "nothing to train" in again.output
    assert (files["finished"] / "config.json").read_bytes() == config_before
    assert len((files["finished"] / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_teacher_from_another_dataset_needs_cross_dataset(files):
    out = files["root"] / "cross"
    refused = _invoke("train", "--out", out, "--teacher", files["mnist_teacher"], *TINY_TRAIN_FLAGS)
    message = _error_line(refused)
    assert refused.exit_code == 2 and "mnist" in message and "digits" in message and not out.exists()
    accepted = _invoke("train", "--out", out, "--teacher", files["mnist_teacher"], "--cross-dataset", *TINY_TRAIN_FLAGS)
    assert accepted.exit_code == 0, accepted.output
    assert json.loads((out / "config.json").read_text())["config"]["teacher"]["cross_dataset"] is True


def test_evaluate_reads_the_dataset_from_the_checkpoint(files):
    recorded = _invoke("evaluate", "--checkpoint", files["teacher"], "--json")
    assert recorded.exit_code == 0, recorded.output
    summary = json.loads(recorded.output.strip().splitlines()[-1])
    assert summary["dataset"] == "digits" and summary["total"] == 360
    crossed = _invoke(
        "evaluate", "--checkpoint", files["mnist_teacher"], "--dataset", "digits", "--cross-dataset", "--json"
    )
    assert crossed.exit_code == 0 and json.loads(crossed.output.strip().splitlines()[-1])["dataset"] == "digits"
