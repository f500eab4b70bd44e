"""What a new user meets around the commands: a quick answer to a typo (no heavy import before the checks),
presets and the resolved config without a run, --help with defaults and choices, logs that read cleanly
when piped, and Ctrl-C during teacher pretraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import click
import torch
from click.testing import CliRunner

from conftest import TINY_TRAIN_FLAGS, signal_after_line
from fastlrwa.cli import cli
from fastlrwa.config.presets import PRETRAIN_PRESETS, TRAIN_PRESETS
from fastlrwa.cpu_runtime import SPIN_COUNT, WAIT_SETTINGS
from fastlrwa.data.catalog import DATASET_NAMES
from fastlrwa.models.names import CLASSIFIER_NAMES
from fastlrwa.models.registry import REGISTERED_BUILDERS

HEAVY_MODULES = ("torch", "torchvision", "sklearn", "matplotlib")


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_and_the_train_checks_import_no_heavy_module():
    assert _loaded_after("import fastlrwa.cli, fastlrwa.commands.train, fastlrwa.data, fastlrwa.models") == []


def test_a_missing_teacher_is_answered_before_any_heavy_import(tmp_path):
    args = ["train", "--teacher", str(tmp_path / "none.pt"), "--out", str(tmp_path / "run")]
    code = (
        f"from fastlrwa.cli import cli\ntry:\n    cli({args!r})\n"
        f"except SystemExit as exit:\n    assert exit.code == 2, exit.code"
    )
    assert _loaded_after(code) == []


def test_lazy_exports_resolve_to_their_objects_and_names_match_the_registry():
    import fastlrwa.data as data
    import fastlrwa.models as models

    assert CLASSIFIER_NAMES == tuple(REGISTERED_BUILDERS)
    for package in (data, models):
        listed = []
        for module, names in package._EXPORTS.items():
            for name in names:
                value = getattr(package, name)
                assert not isinstance(value, type(sys)), f"{package.__name__}.{name} is a module"
                assert value is getattr(sys.modules[f"{package.__name__}.{module}"], name)
                listed.append(name)
        assert package.__all__ == sorted(listed) == dir(package)


def test_presets_lists_every_preset_and_recipe():
    result = _invoke("presets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if line.startswith("  ")]
    assert names == [*TRAIN_PRESETS, *PRETRAIN_PRESETS]


def test_print_config_resolves_flags_and_runs_nothing(tmp_path, lenet_teacher):
    out = tmp_path / "run"
    result = _invoke(
        "train",
        "--preset",
        "fashion-mnist",
        "--epochs",
        "7",
        "--method",
        "dfad",
        "--out",
        out,
        "--teacher",
        lenet_teacher,
        "--print-config",
    )
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert (config["schedule"]["epochs"], config["method"], config["data"]["dataset"]) == (7, "dfad", "fashion-mnist")
    assert config["schedule"]["iters_per_epoch"] == 40 and config["runtime"]["out"] == str(out)
    assert not out.exists()
    invalid = _invoke("train", "--epochs", "0", "--out", out, "--teacher", lenet_teacher, "--print-config")
    assert invalid.exit_code == 2 and "--epochs 0" in invalid.output


def test_help_shows_defaults_choices_and_text_for_every_option():
    train_help = " ".join(_invoke("train", "--help").output.split())
    assert "30 in the digits preset" in train_help and "lenet5_half in the digits preset" in train_help
    assert "|".join(DATASET_NAMES) in train_help
    assert all(name in train_help for name in CLASSIFIER_NAMES)
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help text"


def test_evaluate_needs_no_dataset_flag():
    dataset = next(param for param in cli.commands["evaluate"].params if param.name == "dataset")
    assert not dataset.required


def test_piped_logs_are_whole_lines_without_torch_notices(tmp_path, lenet_teacher):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    env.pop("TERM", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastlrwa",
            "train",
            "--out",
            str(tmp_path / "run"),
            "--teacher",
            str(lenet_teacher),
            "--method",
            "lrwa-mb",
            # progress left to the CLI's own choice: piped output must turn the bar off by itself
            *(flag for flag in TINY_TRAIN_FLAGS if flag != "--no-progress"),
            "--epochs",
            "2",
            "--iters-per-epoch",
            "2",
            "--memory-push-every",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    # The exact second-order update ran (replay from epoch 2): torch's jit.script notice must not show.
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])["grad_cos"] is not None
    assert not [line for line in lines if "Warning" in line or "━" in line]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("samples/s" in line for line in epochs)
    [done_line] = [line for line in lines if line.startswith("done: ")]
    assert ">80%" in done_line and len(done_line) > 80


def test_torch_notices_are_silenced_by_the_cli(tmp_path):
    """Torch warns "No CUDA runtime is found" on importing cpp_extension (export, --compile) without a GPU."""
    code = "import fastlrwa.cli as cli\n{}\nimport torch.utils.cpp_extension"
    env = {**os.environ, "CUDA_HOME": str(tmp_path)}
    quiet = subprocess.run(
        [sys.executable, "-c", code.format("cli.configure_output()")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == 0 and "No CUDA runtime" not in quiet.stderr, quiet.stderr
    if not torch.cuda.is_available():  # the notice this guards against does appear without the CLI's setup
        loud = subprocess.run(
            [sys.executable, "-c", code.format("")], env=env, capture_output=True, text=True, timeout=120
        )
        assert "No CUDA runtime" in loud.stderr


def test_ctrl_c_during_pretraining_is_one_line_and_130(tmp_path):
    out = tmp_path / "teacher"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastlrwa",
            "pretrain",
            "--dataset",
            "digits",
            "--epochs",
            "100000",
            "--no-progress",
            "--out",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN; a user's
        # Ctrl-C reaches a foreground process, so the child gets the default disposition whoever runs the suite.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    rest = signal_after_line(process, "epoch 2/", signal.SIGINT)
    assert process.returncode == 130
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in rest and "Aborted" not in rest, rest
    assert "teacher pretraining" in errors[0] and not (out / "model.pt").exists()


def test_ctrl_c_during_first_use_teacher_training_in_train(tmp_path, monkeypatch):
    import fastlrwa.trainer.pretrain as pretrain

    monkeypatch.setenv("FASTLRWA_CACHE", str(tmp_path / "cache"))

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "evaluate", pressed)  # Ctrl-C at the end of the teacher's first epoch
    result = _invoke("train", "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 130
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "epoch 1/30 of teacher pretraining" in errors[0]
    assert not list((tmp_path / "cache").rglob("model.pt")) and not (tmp_path / "run").exists()


def test_the_command_line_bounds_the_openmp_spin_before_torch_loads():
    """The entry point sets it before anything has imported torch, so libgomp reads it when torch loads."""
    code = (
        "import os, sys\n"
        "from fastlrwa import cli\n"
        "assert 'torch' not in sys.modules, 'importing the command line imported torch'\n"
        "sys.argv = ['fastlrwa', 'train', '--print-config']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "import torch\n"
        "print(os.environ['GOMP_SPINCOUNT'])\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in WAIT_SETTINGS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == SPIN_COUNT
