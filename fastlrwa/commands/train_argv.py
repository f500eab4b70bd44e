"""A run's config as a ``fastlrwa train`` command line, read off the options table.

``fastlrwa sweep`` starts each run as one ``fastlrwa train`` process and prints the same commands for
a SLURM array, so an override must be said with ``train``'s flags. Which flag sets which config key is
the field's :class:`~fastlrwa.options.Flag`, the same row ``train``'s options are built from
(``commands.config_flags``), so a field given a flag is sweepable without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastlrwa.config.schema import TrainConfig
from fastlrwa.errors import ConfigError
from fastlrwa.options import TableRow, option_table
from fastlrwa.run_log.settings import format_value


def said(row: TableRow, value: Any) -> list[str] | None:
    """The ``train`` arguments that set ``row``'s field to ``value``, or None where its flag cannot say it."""
    if row.is_bool:
        return next(([name] for name, sets in row.flag.bool_flags().items() if sets is value), None)
    if value is None:
        return None
    text = format_value(value)
    if row.choices is not None and text not in map(str, row.choices):
        return None
    return [str(row.flag.name), text]


class TrainArgv:
    """Dotted config key -> ``train`` flag, for the keys ``train`` has a flag for."""

    def __init__(self) -> None:
        self.rows = {key: row for key, row in option_table(TrainConfig).items() if row.flag.name}

    def check_keys(self, keys: Iterable[str], what: str) -> None:
        """Refuse a key that ``train`` has no flag for, naming the ones it has."""
        for key in keys:
            if key not in self.rows:
                raise ConfigError(
                    f"{what} {key}: `fastlrwa train` has no flag for this key, so a run cannot be given "
                    f"it; keys with a flag: {', '.join(sorted(self.rows))}"
                )

    def argv(self, overrides: Mapping[str, Any], preset_values: Mapping[str, Any]) -> list[str]:
        """``train`` arguments that set every override; an override equal to the preset's value that no flag
        can say (e.g. amp none) is left out, any other one is refused."""
        arguments: list[str] = []
        for key, value in overrides.items():
            self.check_keys([key], "override")
            words = said(self.rows[key], value)
            if words is None:
                if preset_values.get(key) == value:
                    continue
                raise ConfigError(
                    f"{key}={format_value(value)} cannot be said with `fastlrwa train`'s "
                    f"{self.rows[key].flag.name} flag; choose another value"
                )
            arguments += words
        return arguments
