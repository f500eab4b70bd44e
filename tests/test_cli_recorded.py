"""The command line resolves every preset and flag exactly as recorded before the options were rearranged.

``fixtures/cli_recorded.json`` holds, for a set of command lines (every train preset, every preset x method,
every train and pretrain flag alone, a few sweeps), what the command printed and its exit status. It was
written once by ``python tests/test_cli_recorded.py`` from the commit it names, so the expected values come
from that code, not from the code under test. Paths below the test's temporary folder are stored as
``{tmp}``. An option added since the recording shows as a config key the recording lacks, and is allowed;
every recorded value and every other output must be unchanged. Regenerate the file only when a change of
behaviour is meant, and say so in the commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

FIXTURE = Path(__file__).parent / "fixtures" / "cli_recorded.json"
# Methods the recorded commit did not have: their presets are checked where they are built (tests/test_zskd.py).
ADDED_SINCE_THE_RECORDING = {"zskd"}
_FORBIDDEN_VALUES = {"cuda", "auto"}  # a device value the machine may not have; the fixture picks cpu


def _teacher(tmp: Path) -> Path:
    from conftest import write_teacher

    path = tmp / "teacher.pt"
    if not path.exists():
        write_teacher(path, "lenet5")
    return path


def _run(argv: list[str], tmp: Path) -> dict[str, Any]:
    """What ``fastlrwa ARGV`` prints (stdout and stderr) and its exit status; pretrain stops before training and
    prints its resolved config instead."""
    import fastlrwa.commands.pretrain as pretrain_command
    from fastlrwa.cli import cli
    from fastlrwa.config.schema import to_dict

    args = [part.replace("{tmp}", str(tmp)) for part in argv]

    def record_pretrain(config, context, **options):
        click.echo(json.dumps({"config": to_dict(config), "options": sorted(options)}, indent=2))

    original = pretrain_command.run_pretrain
    pretrain_command.run_pretrain = record_pretrain
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        pretrain_command.run_pretrain = original
    return {"exit_code": result.exit_code, "output": result.output.replace(str(tmp), "{tmp}")}


def _value_for(option: click.Option, default: Any) -> str:
    """A value for ``option`` other than its shown default, valid for its type."""
    if isinstance(option.type, click.Choice):
        choices = [c for c in option.type.choices if c not in _FORBIDDEN_VALUES]
        others = [c for c in choices if str(c) != str(default)]
        return str((others or choices)[-1])
    if option.type is click.INT or isinstance(option.type, click.types.IntParamType):
        return "3"
    if isinstance(option.type, click.types.FloatParamType):
        return "0.37"
    return "{tmp}/value"


def _flag_cases(command: click.Command, base: list[str], skip: set[str]) -> list[list[str]]:
    cases = []
    for option in command.params:
        if not isinstance(option, click.Option) or option.opts[0] in skip or option.opts[0] == "--help":
            continue
        if option.is_flag:
            cases += [[*base, name] for name in (*option.opts, *option.secondary_opts)]
        elif option.opts[0] == "--device":
            cases.append([*base, "--device", "cpu"])
        else:
            cases.append([*base, option.opts[0], _value_for(option, option.default)])
    return cases


def cases() -> list[list[str]]:
    from fastlrwa.cli import pretrain, train
    from fastlrwa.config.methods import METHODS
    from fastlrwa.config.presets import PRETRAIN_PRESETS, TRAIN_PRESETS

    run = ["--out", "{tmp}/run", "--teacher", "{tmp}/teacher.pt", "--print-config"]
    train_cases = [["train", *run]]
    for preset in TRAIN_PRESETS:
        train_cases.append(["train", "--preset", preset, *run])
        train_cases += [["train", "--preset", preset, "--method", method, *run] for method in METHODS]
    train_cases += _flag_cases(train, ["train", *run], {"--out", "--teacher", "--print-config", "--preset"})
    train_cases += [
        ["train", "--print-config", "--teacher", "{tmp}/teacher.pt"],  # no --out: a fresh runs/PRESET
        ["train", *run, "--out", "{tmp}/run", "--resume"],
        ["train", *run, "--epochs", "0"],
        ["train", *run, "--compile", "--compile-mode", "reduce-overhead", "--device", "cpu"],
        ["train", *run, "--amp", "--amp-dtype", "fp16", "--device", "cpu"],
        ["train", *run, "--teacher-arch", "lenet5"],
    ]
    pretrain_cases = []
    for dataset in PRETRAIN_PRESETS:
        pretrain_cases.append(["pretrain", "--dataset", dataset, "--device", "cpu"])
    base = ["pretrain", "--dataset", "digits", "--out", "{tmp}/teacher"]
    pretrain_cases += _flag_cases(pretrain, base, {"--dataset", "--out"})
    sweep = ["sweep", "--root", "{tmp}/sweep", "--dry-run", "--fix", "teacher.path={tmp}/teacher.pt"]
    sweep_cases = [
        [*sweep],
        [*sweep, "--preset", "fashion-mnist", "--methods", "lrwa-mb,mb-dfkd", "--seeds", "0-2"],
        [*sweep, "--set", "generator.lr=1e-3,3e-3", "--set", "lrwa.alpha=0.3,0.9", "--fix", "schedule.epochs=4"],
        [*sweep, "--set", "runtime.compile=true,false", "--fix", "runtime.amp=bf16", "--fix", "loss.a=0.2"],
        [*sweep, "--fix", "runtime.progress=false", "--fix", "teacher.trust_pickle=true"],
        [*sweep, "--set", "lrwa.hvp=exact,fd", "--fix", "replay.slots=4", "--fix", "student.init=kaiming"],
        [*sweep, "--set", "no.such=1,2"],
        [*sweep, "--fix", "runtime.out=elsewhere"],
        [*sweep, "--fix", "runtime.seed=3"],
    ]
    return train_cases + pretrain_cases + sweep_cases


def _recorded() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recorded")
    _teacher(folder)
    return folder


@pytest.mark.parametrize(
    "case", _recorded()["cases"] if FIXTURE.exists() else [], ids=lambda case: " ".join(case["argv"])[:120]
)
def test_command_line_matches_the_recording(case, tmp, monkeypatch):
    monkeypatch.chdir(tmp)
    got = _run(case["argv"], tmp)
    assert got["exit_code"] == case["exit_code"]
    recorded_text, recorded = _split(case["output"])
    text, config = _split(got["output"])
    assert text == recorded_text
    # An option added since the recording is a new key; every recorded value must be unchanged.
    assert _recorded_part(config, recorded) == recorded


def _split(output: str) -> tuple[str, Any]:
    """The lines before a printed JSON config, and the config (None where the output holds none)."""
    start = output.find("{\n")
    if start < 0:
        return output, None
    try:
        return output[:start], json.loads(output[start:])
    except json.JSONDecodeError:
        return output, None


def _recorded_part(value: Any, recorded: Any) -> Any:
    """``value`` with only the keys ``recorded`` has, at every depth."""
    if isinstance(recorded, dict) and isinstance(value, dict):
        return {key: _recorded_part(value[key], recorded[key]) for key in recorded if key in value}
    return value


def test_recording_covers_every_preset_and_method():
    from fastlrwa.config.methods import METHODS
    from fastlrwa.config.presets import TRAIN_PRESETS

    argvs = [case["argv"] for case in _recorded()["cases"]]
    for preset in TRAIN_PRESETS:
        for method in set(METHODS) - ADDED_SINCE_THE_RECORDING:
            assert any(argv[:5] == ["train", "--preset", preset, "--method", method] for argv in argvs)


def _write(commit: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder).resolve()
        _teacher(tmp)
        import os

        os.chdir(tmp)
        recorded = []
        for argv in cases():
            for leftover in ("run", "sweep", "runs"):
                subprocess.run(["rm", "-rf", str(tmp / leftover)], check=True)
            recorded.append({"argv": argv, **_run(argv, tmp)})
    note = (
        f"written by `python tests/test_cli_recorded.py` from commit {commit}, before the options moved into "
        "one table; expected values of tests/test_cli_recorded.py"
    )
    FIXTURE.write_text(json.dumps({"note": note, "commit": commit, "cases": recorded}, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    _write(head)
