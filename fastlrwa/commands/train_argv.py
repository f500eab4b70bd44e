"""A run's config as a ``fastlrwa train`` command line, read off the command's own options.

``fastlrwa sweep`` starts each run as one ``fastlrwa train`` process and prints the same commands for
a SLURM array, so an override must be said with ``train``'s flags. Which flag sets which config key
is read from the ``train`` click command itself: a value flag's parameter is named after its dotted
config path (``--lr-generator`` is ``generator__lr``, i.e. ``generator.lr``), and the few flags named
otherwise are listed in ``NAMED_PARAMETERS``. A flag added to ``train`` is sweepable without a change
here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from fastlrwa.config.schema import TrainConfig, to_dict
from fastlrwa.errors import ConfigError
from fastlrwa.metrics.settings import flatten_config, format_value

# Config keys whose `train` flag is not named after its path: key -> click parameter name.
NAMED_PARAMETERS = {"runtime.amp": "amp_dtype", "runtime.compile": "compile_", "teacher.trust_pickle": "trust_pickle"}


@dataclass(frozen=True)
class TrainFlag:
    """How one config key is set on the ``train`` command line."""

    key: str
    option: click.Option

    def argv(self, value: Any) -> list[str] | None:
        """The arguments that set ``value``, or None when this flag cannot say it."""
        option = self.option
        if option.is_flag:
            if option.secondary_opts and isinstance(value, bool):  # --compile / --no-compile
                return [option.opts[0] if value else option.secondary_opts[0]]
            return [option.opts[0]] if value is True or value == option.flag_value else None
        if value is None:
            return None
        text = format_value(value)
        if isinstance(option.type, click.Choice) and text not in option.type.choices:
            return None
        return [option.opts[0], text]


class TrainArgv:
    """Dotted config key -> ``train`` flag, for the keys ``train`` has a flag for."""

    def __init__(self, flags: Mapping[str, TrainFlag]) -> None:
        self.flags = dict(flags)

    @classmethod
    def of(cls, command: click.Command) -> TrainArgv:
        keys = set(flatten_config(to_dict(TrainConfig())))
        by_parameter = {parameter: key for key, parameter in NAMED_PARAMETERS.items()}
        flags = {}
        for option in command.params:
            if not isinstance(option, click.Option) or option.name is None:
                continue
            key = by_parameter.get(option.name, option.name.replace("__", "."))
            if key in keys:
                flags[key] = TrainFlag(key, option)
        return cls(flags)

    def check_keys(self, keys: Iterable[str], what: str) -> None:
        """Refuse a key that ``train`` has no flag for, naming the ones it has."""
        for key in keys:
            if key not in self.flags:
                raise ConfigError(
                    f"{what} {key}: `fastlrwa train` has no flag for this key, so a run cannot be given "
                    f"it; keys with a flag: {', '.join(sorted(self.flags))}"
                )

    def argv(self, overrides: Mapping[str, Any], preset_values: Mapping[str, Any]) -> list[str]:
        """``train`` arguments that set every override; an override equal to the preset's value that no flag
        can say (e.g. amp none) is left out, any other one is refused."""
        arguments: list[str] = []
        for key, value in overrides.items():
            self.check_keys([key], "override")
            said = self.flags[key].argv(value)
            if said is None:
                if preset_values.get(key) == value:
                    continue
                raise ConfigError(
                    f"{key}={format_value(value)} cannot be said with `fastlrwa train`'s "
                    f"{self.flags[key].option.opts[0]} flag; choose another value"
                )
            arguments += said
        return arguments
