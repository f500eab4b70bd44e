"""Typed options: each Literal is the one source of its choices, checked once, offered by the command line."""

from __future__ import annotations

import dataclasses
import json
import typing

import click
import pytest
from click.testing import CliRunner

from fastlrwa.cli import cli, train
from fastlrwa.config.methods import MethodSpec
from fastlrwa.config.presets import train_config
from fastlrwa.config.schema import PretrainConfig, RuntimeConfig, TrainConfig, field_type, from_dict, to_dict
from fastlrwa.errors import ConfigError
from fastlrwa.losses.options import GeneratorLossOptions
from fastlrwa.options import OptionError, choices_of, literal_choices
from fastlrwa.run_log.settings import flatten_config
from fastlrwa.updates.options import JointOptions, LRWAOptions


def _literal_keys(cls: type, prefix: str = "") -> dict[str, tuple]:
    """Every dotted key of a config dataclass whose field is a Literal, with its choices."""
    found = {}
    for field in dataclasses.fields(cls):
        annotation = field_type(cls, field.name)
        if dataclasses.is_dataclass(annotation):
            found.update(_literal_keys(annotation, f"{prefix}{field.name}."))
        elif literal_choices(annotation) is not None:
            found[f"{prefix}{field.name}"] = literal_choices(annotation)
    return found


def test_the_update_options_are_literals_of_their_own():
    literals = _literal_keys(TrainConfig)
    assert literals["lrwa.objective"] == ("paper", "official", "released")
    assert literals["lrwa.hvp"] == ("exact", "fd", "first_order")
    assert literals["joint.objective"] == ("official", "paper")
    assert literals["loss.js_variant"] == ("paper", "official")
    assert {"student.schedule", "student.init", "runtime.amp", "runtime.compile_mode", "lrwa.exact_method"} <= set(
        literals
    )
    for cls in (TrainConfig, LRWAOptions, JointOptions, GeneratorLossOptions, PretrainConfig, MethodSpec):
        assert cls.__dataclass_params__.frozen, cls


@pytest.mark.parametrize("key", sorted(_literal_keys(TrainConfig)))
def test_every_choice_is_accepted_and_anything_else_is_one_line_naming_the_choices(key):
    choices = _literal_keys(TrainConfig)[key]
    for choice in choices:
        config = train_config("digits", {key: choice})
        assert flatten_config(to_dict(config))[key] == choice
    with pytest.raises(ConfigError) as error:
        train_config("digits", {key: "bogus"})
    message = str(error.value)
    assert message == f"flag {key}='bogus' is not valid; choose one of: {', '.join(choices)}"


def test_a_saved_config_with_a_bad_choice_is_refused_with_its_key():
    saved = to_dict(TrainConfig())
    saved["joint"]["objective"] = "sum"
    with pytest.raises(ConfigError, match=r"^saved config joint.objective='sum' is not valid; choose one of: "):
        from_dict(TrainConfig, saved)


def test_options_built_in_code_are_checked_once_when_built():
    with pytest.raises(OptionError, match="exact_method='lanczos'"):
        LRWAOptions(exact_method="lanczos")
    with pytest.raises(OptionError, match="generator_objective='gan'"):
        MethodSpec("gan", "plain", "none", "not a method")
    options = LRWAOptions(hvp="fd")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.hvp = "bogus"


def test_train_flags_offer_exactly_the_literal_choices():
    """click.Choice of every train flag on a Literal field is read from that Literal."""
    by_key = {option.name.replace("__", "."): option for option in train.params if isinstance(option, click.Option)}
    amp_dtype = by_key.pop("runtime.amp")
    literals = _literal_keys(TrainConfig)
    flagged = {key for key in literals if key in by_key}
    assert {
        "lrwa.objective",
        "lrwa.hvp",
        "lrwa.exact_method",
        "joint.objective",
        "loss.js_variant",
        "runtime.compile_mode",
        "student.schedule",
        "student.init",
    } <= flagged
    for key in flagged:
        assert tuple(by_key[key].type.choices) == literals[key], key
    assert amp_dtype.opts == ["--amp-dtype"]
    assert tuple(amp_dtype.type.choices) == tuple(choices_of(RuntimeConfig, "amp"))


def test_a_bad_flag_choice_is_refused_by_the_command_line_naming_the_literal_choices(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--hvp", "gauss-newton", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "'gauss-newton' is not one of 'exact', 'fd', 'first_order'" in result.output


def test_config_json_of_the_previous_format_loads_with_its_keys_renamed():
    """Version 3 wrote replay.joint_objective and lrwa.log_alignment (the probe on every step, or none)."""
    preset = train_config("digits")
    other = "paper" if preset.joint.objective == "official" else "official"
    for log_alignment, align_every in ((True, 1), (False, 0)):
        saved = json.loads(json.dumps(to_dict(preset)))
        del saved["joint"]
        del saved["lrwa"]["align_every"]
        saved["replay"]["joint_objective"] = other
        saved["lrwa"]["log_alignment"] = log_alignment
        config = from_dict(TrainConfig, saved)
        assert config.joint.objective == other and config.lrwa.align_every == align_every
        assert (
            dataclasses.replace(config, lrwa=dataclasses.replace(config.lrwa, align_every=10), joint=preset.joint)
            == preset
        )


def test_literal_choices_reads_plain_and_optional_literals_only():
    assert literal_choices(typing.Literal["a", "b"]) == ("a", "b")
    assert literal_choices(typing.Optional[typing.Literal["x"]]) == ("x",)
    assert literal_choices(int) is None and literal_choices(str | None) is None
