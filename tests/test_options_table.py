"""One table of options: a field's flag, help and run-local mark are declared with it, and everything else reads them.

An option added as one field gets its command-line flag, its name in messages, its place in a sweep's train line
and its resume rule without another change; the train command has no flag the table does not declare; the
run-local keys, the keys a resume may change and the keys a sweep reserves are the ones written out below (as they
were before the table, at 57d652f).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

import fastlrwa.commands.train as train_command
from fastlrwa.cli import TRAIN_FLAGS, cli, pretrain, train
from fastlrwa.commands.config_flags import config_options, config_overrides
from fastlrwa.commands.sweep_grid import RESERVED_KEYS
from fastlrwa.commands.train_argv import TrainArgv, said
from fastlrwa.config.presets import train_config
from fastlrwa.config.schema import RUN_LOCAL_KEYS, PretrainConfig, TrainConfig, apply_overrides, to_dict
from fastlrwa.config.validate import validate_on_device
from fastlrwa.errors import ConfigError
from fastlrwa.options import Options, config_key, flag_names, literal_choices, option, option_table, run_local_keys
from fastlrwa.run_log.settings import REPORT_IGNORED_KEYS, flatten_config


@dataclass(frozen=True)
class _Section(Options):
    rate: float = option(0.25, flag="--rate", help="a rate")
    # The option being added: this one line is all of it.
    pin: bool = option(False, flag="--pin", help="pin the thing", run_local=True)


@dataclass(frozen=True)
class _Config(Options):
    section: _Section = field(default_factory=_Section)
    quiet: bool = option(False, flag="--loud/--quiet", help="how much to say")
    colour: bool = option(True, flag="--no-colour", help="plain text")


def _toy_command() -> click.Command:
    seen: dict = {}

    @click.command()
    @config_options(_Config, flatten_config(to_dict(_Config())), lambda key, value: f"{value} here")
    def toy(**values):
        seen.clear()
        seen.update(config_overrides(_Config, values))

    toy.seen = seen
    return toy


def test_a_boolean_option_is_one_field():
    toy = _toy_command()
    help_text = CliRunner().invoke(toy, ["--help"]).output
    assert "--pin" in help_text and "pin the thing" in help_text and "0.25 here" in help_text
    assert CliRunner().invoke(toy, ["--pin"]).exit_code == 0
    assert toy.seen == {"section.pin": True}
    assert CliRunner().invoke(toy, []).exit_code == 0 and toy.seen == {}
    CliRunner().invoke(toy, ["--quiet", "--no-colour", "--rate", "0.5"])
    assert toy.seen == {"quiet": False, "colour": False, "section.rate": 0.5}
    assert apply_overrides(_Config(), toy.seen) == _Config(_Section(rate=0.5), quiet=False, colour=False)
    # Its name in messages, its key from the flag (as `sweep --set pin=...` reads it), its resume rule:
    assert flag_names(_Config) == {
        "section.rate": "--rate",
        "section.pin": "--pin",
        "quiet": "--loud",
        "colour": "--no-colour",
    }
    assert config_key(_Config, "pin") == config_key(_Config, "--pin") == "section.pin"
    assert config_key(_Config, "quiet") == "quiet" and config_key(_Config, "no-colour") == "colour"
    assert run_local_keys(_Config) == {"section.pin"}
    # ... and the argv a sweep writes for it: a flag says only the value it sets.
    rows = option_table(_Config)
    assert said(rows["section.pin"], True) == ["--pin"] and said(rows["section.pin"], False) is None
    assert said(rows["quiet"], True) == ["--loud"] and said(rows["quiet"], False) == ["--quiet"]
    assert said(rows["colour"], False) == ["--no-colour"] and said(rows["colour"], True) is None


def _spelt(config_class: type) -> set[str]:
    flags = set()
    for row in option_table(config_class).values():
        if row.flag.name:
            flags |= set(row.flag.bool_flags()) if row.is_bool else {row.flag.name}
        flags |= {switch for switch, _, _ in row.flag.switches}
    return flags


def _command_flags(command: click.Command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize(
    "command,config_class,own",
    [
        (train, TrainConfig, {"--preset", "--resume", "--force", "--print-config"}),
        (pretrain, PretrainConfig, {"--dataset", "--force"}),
    ],
)
def test_a_command_has_the_tables_flags_and_its_own_only(command, config_class, own):
    assert _command_flags(command) == _spelt(config_class) | own
    spelt = [row.flag.name for row in option_table(config_class).values() if row.flag.name]
    assert len(spelt) == len(set(spelt)), "two fields share a flag"


def test_every_flag_of_train_reads_back_as_its_key(tmp_path, monkeypatch):
    """A value other than the preset's for every flagged key, said as the sweep says it, parsed by `train`."""
    captured = []
    monkeypatch.setattr(train_command, "run_train", lambda config, **options: captured.append((config, options)))
    preset = flatten_config(to_dict(train_config("digits")))
    argv = TrainArgv()
    assert len(argv.rows) >= 55
    for key, row in argv.rows.items():
        value = _other_value(row.annotation, row.choices, preset[key])
        words = said(row, value)
        assert words is not None, key
        result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), *words])
        assert result.exit_code == 0, (key, result.output)
        config, options = captured[-1]
        assert flatten_config(to_dict(config))[key] == value, key
        assert key in options["explicit"] and options["flags"] == TRAIN_FLAGS


def _other_value(annotation, choices, current):
    if choices is not None:
        return next(choice for choice in reversed(choices) if choice != current)
    kinds = typing.get_args(annotation) or (annotation,)
    if bool in kinds:
        return not current
    if int in kinds:
        return (current or 0) + 3
    if float in kinds:
        return (current or 0.0) + 0.375
    return "elsewhere"


def test_run_local_keys_are_the_ones_resume_and_the_report_leave_alone():
    expected = {
        "runtime.out",
        "runtime.device",
        "runtime.progress",
        "runtime.eval_batch_size",
        "runtime.compile",
        "runtime.compile_mode",
        "runtime.stop_after",
        "teacher.trust_pickle",
        "data.data_root",
        "data.download",
        "lrwa.align_every",
        "impressions.chunk",
        "diagnostics.grad_norm_every",
        "diagnostics.sample_grid",
    }
    assert RUN_LOCAL_KEYS == expected
    assert REPORT_IGNORED_KEYS == expected | {"method", "runtime.seed", "teacher.path"}
    assert RESERVED_KEYS == {
        "method": "--methods",
        "runtime.seed": "--seeds",
        "runtime.out": "--root",
        "runtime.device": "--device",
        "runtime.progress": "(runs always log to train.log)",
    }


def test_a_resume_takes_every_run_local_change_and_refuses_any_other(tmp_path, monkeypatch):
    saved = train_config("digits", {"runtime.out": str(tmp_path)})
    monkeypatch.setattr(train_command, "_saved_config", lambda run: to_dict(saved))
    values = flatten_config(to_dict(saved))
    rows = option_table(TrainConfig)
    changes = {key: _other_value(rows[key].annotation, rows[key].choices, values[key]) for key in RUN_LOCAL_KEYS}
    requested = apply_overrides(saved, changes)
    resumed = train_command._resumed_config(None, requested, set(changes), TRAIN_FLAGS)
    assert flatten_config(to_dict(resumed)) == {**values, **changes}
    with pytest.raises(ConfigError, match=r"--lr-student 0.05 cannot change to 0.425.*changeable on resume: "):
        lr = apply_overrides(saved, {"student.lr": 0.425})
        train_command._resumed_config(None, lr, {"student.lr"}, TRAIN_FLAGS)


def test_sweep_takes_a_train_flag_name_for_a_key(tmp_path):
    def dry_run(*words):
        root = ["--root", str(tmp_path / "sweep"), "--dry-run", "--fix", f"teacher.path={tmp_path}/teacher.pt"]
        return CliRunner().invoke(cli, ["sweep", *root, *words])

    by_key = dry_run("--set", "generator.lr=1e-3,3e-3", "--fix", "schedule.epochs=4", "--fix", "runtime.compile=true")
    by_flag = dry_run("--set", "lr-generator=1e-3,3e-3", "--fix", "epochs=4", "--fix", "compile=true")
    assert by_key.exit_code == by_flag.exit_code == 0, by_flag.output
    assert by_flag.output == by_key.output
    assert "generator.lr=0.001/seed-0" in by_flag.output and "--lr-generator 0.003" in by_flag.output
    refused = dry_run("--fix", "seed=3")
    assert (
        refused.exit_code == 2 and "--fix runtime.seed: the sweep sets this key itself; use --seeds" in refused.output
    )


def test_reduce_overhead_is_checked_once_against_the_resolved_device():
    config = train_config("digits", {"runtime.compile": True, "runtime.compile_mode": "reduce-overhead"})
    with pytest.raises(
        ConfigError, match=r"^--compile-mode reduce-overhead replays CUDA graphs, and this run is on cpu"
    ):
        validate_on_device(config, "cpu", TRAIN_FLAGS)
    with pytest.raises(ConfigError, match=r"^runtime.compile_mode='reduce-overhead' replays"):
        validate_on_device(config, "cpu")
    validate_on_device(config, "cuda:1", TRAIN_FLAGS)
    validate_on_device(dataclasses.replace(config, runtime=train_config("digits").runtime), "cpu", TRAIN_FLAGS)


def test_a_literal_field_offers_its_literal_and_a_listed_field_its_list():
    rows = option_table(TrainConfig)
    assert rows["lrwa.hvp"].choices == literal_choices(rows["lrwa.hvp"].annotation) == ("exact", "fd", "first_order")
    assert rows["runtime.amp"].choices == ("auto", "none", "bf16", "fp16")
    assert [switch for switch, _, _ in rows["runtime.amp"].flag.switches] == ["--amp", "--no-amp"]
    assert "lrwa-mb" in rows["method"].choices and rows["method"].annotation is str
