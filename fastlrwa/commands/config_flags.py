"""The click options of a config dataclass, read from its options table (``fastlrwa.options.option``).

Every field with a flag becomes one option (more where it has ``switches``), ``default=None``, so that a flag
left out keeps the preset's (or the recipe's) value; :func:`config_overrides` turns what was given back into
dotted-key overrides. A ``bool`` field's flag sets the value its name says (``--trust-pickle`` true,
``--no-progress`` false, ``--compile/--no-compile`` either). How a click parameter is named after its key is
this module's own business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, get_args

import click

from fastlrwa.options import TableRow, option_table

_SWITCH = "__switch"


def _parameter(key: str) -> str:
    return key.replace(".", "__")


def _click_type(row: TableRow) -> Any:
    """A ``click.Choice`` of the row's choices, or the field's scalar type."""
    if row.choices is not None:
        return click.Choice(list(row.choices))
    return next(kind for kind in get_args(row.annotation) or (row.annotation,) if kind is not type(None))


def _options(row: TableRow, shown_default: str | None) -> list[Callable]:
    flag, name = row.flag, _parameter(row.key)
    if row.is_bool:
        flags = flag.bool_flags()
        if len(flags) == 2:
            return [click.option(flag.name, name, default=None, help=flag.help)]
        [(spelt, value)] = flags.items()
        return [click.option(spelt, name, is_flag=True, flag_value=value, default=None, help=flag.help)]
    options = []
    for spelt, value, text in flag.switches:  # one parameter: the last switch given wins
        options.append(click.option(spelt, name + _SWITCH, flag_value=value, default=None, help=text))
    options.append(
        click.option(flag.name, name, type=_click_type(row), default=None, help=flag.help, show_default=shown_default)
    )
    return options


def config_options(
    config_class: type, defaults: Mapping[str, Any], shown_default: Callable[[str, Any], str | None]
) -> Callable:
    """A decorator adding the options of every flagged field of ``config_class``, in field order.

    ``defaults``: the value of each key when its flag is left out (the preset's); ``shown_default(key, value)``
    is what ``--help`` says of it (None: nothing), asked only where the flag can say that value.
    """
    rows = [row for row in option_table(config_class).values() if row.flag.name]

    def decorate(func: Callable) -> Callable:
        for row in reversed(rows):
            default = defaults[row.key]
            sayable = not row.is_bool and (row.choices is None or default in row.choices)
            text = shown_default(row.key, default) if sayable else None
            for option in reversed(_options(row, text or False)):
                func = option(func)
        return func

    return decorate


def config_overrides(config_class: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted key -> value of every option of ``config_class`` that was given (a value flag before its switch)."""
    overrides = {}
    for key, row in option_table(config_class).items():
        if not row.flag.name:
            continue
        value = values.get(_parameter(key))
        if value is None and row.flag.switches:
            value = values.get(_parameter(key) + _SWITCH)
        if value is not None:
            overrides[key] = value
    return overrides
