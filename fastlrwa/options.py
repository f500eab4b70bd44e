"""Typed option objects: frozen dataclasses whose choices are ``Literal`` types, checked once, when built,
and whose fields carry their command-line flag: the options table.

Each update, loss and part of a run keeps its options in one such dataclass next to the code that
uses them; the run's config composes them (``fastlrwa.config.schema``). The ``Literal`` of a field
is the one list of its allowed values: the check below, the command line's ``click.Choice`` and
every message naming the choices read it from there, so adding a value is a change to the
``Literal`` and to the code that handles it.

A field declared with :func:`option` carries a :class:`Flag` (``dataclasses.field(metadata=...)``): its
flag, help text and whether it is run-local. The command's options, the flag names in messages, the
``train`` arguments a sweep writes, the keys a resumed run may change and the keys that do not tell two
runs apart are all read from there (:func:`option_table`), so adding an option is one field plus its use.

Torch-free: the command line reads these types to check its input before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from fastlrwa.errors import ConfigError


class OptionError(ConfigError):
    """A field was given a value outside its ``Literal`` choices."""

    def __init__(self, field: str, value: Any, choices: tuple[Any, ...]) -> None:
        self.field, self.value, self.choices = field, value, choices
        super().__init__(f"{field}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal`` type (also inside ``Optional``), or None for any other type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for member in typing.get_args(annotation):
            choices = literal_choices(member)
            if choices is not None:
                return choices
    return None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls`` (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def choices_of(cls: type, field: str) -> tuple[Any, ...]:
    """The allowed values of ``cls.field``, read from its ``Literal`` annotation."""
    choices = literal_choices(field_types(cls)[field])
    if choices is None:
        raise TypeError(f"{cls.__name__}.{field} is not a Literal field")
    return choices


class Options:
    """Base of the option dataclasses: every ``Literal`` field is checked when the object is built.

    Subclasses are ``@dataclass(frozen=True)``; a bad value raises :class:`OptionError` naming the field
    and its choices, so code that receives an options object does not check it again.
    """

    def __post_init__(self) -> None:
        for name, annotation in field_types(type(self)).items():
            choices = literal_choices(annotation)
            value = getattr(self, name)
            if choices is not None and value not in choices and not (value is None and _optional(annotation)):
                raise OptionError(name, value, choices)


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


@dataclass(frozen=True)
class Flag:
    """How one config field is set on the command line, and what kind of setting it is (a row of the table).

    ``name``: the flag of a value (``--lr-generator``); on a ``bool`` field a flag sets it true
    (``--trust-pickle``), one named no-... false (``--no-progress``), and a pair the first way or the
    second (``--compile/--no-compile``); None: the field has no flag. ``choices``: what the flag offers
    where the values are listed elsewhere (the methods, the datasets), the ``Literal``'s own otherwise.
    ``switches``: more flags that each set one value, ``(flag, value, help)``, the last one given winning and
    the value flag over them all (``--amp`` for ``--amp-dtype bf16``, ``--no-amp`` for ``--amp-dtype none``).
    ``run_local``: the field says how a run is executed, not what it computes (where it writes, the device,
    compilation, the progress display, how often a diagnostic is measured): a resumed run may change it and it
    never tells two runs' settings apart. ``sweep``: a sweep sets this key of every run itself, with what it
    names (its flag), so ``--set``/``--fix`` refuse it.
    """

    name: str | None = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    switches: tuple[tuple[str, Any, str], ...] = ()
    run_local: bool = False
    sweep: str | None = None

    @property
    def spelling(self) -> str | None:
        """The flag as a message names it: ``--compile`` for ``--compile/--no-compile``, its first switch
        ``--amp`` for ``--amp-dtype``."""
        if self.switches:
            return self.switches[0][0]
        return None if self.name is None else self.name.split("/")[0]

    def bool_flags(self) -> dict[str, bool]:
        """A ``bool`` field's flags and the value each sets: ``{"--compile": True, "--no-compile": False}``."""
        names = (self.name or "").split("/")
        if len(names) == 2:  # as click reads a pair: the first sets true, the second false
            return {names[0]: True, names[1]: False}
        return {name: not name.lstrip("-").startswith("no-") for name in names if name}


_FLAG = "fastlrwa.flag"


def option(
    default: Any = dataclasses.MISSING,
    *,
    flag: str | None = None,
    help: str = "",
    choices: tuple[Any, ...] | None = None,
    switches: tuple[tuple[str, Any, str], ...] = (),
    run_local: bool = False,
    sweep: str | None = None,
) -> Any:
    """A dataclass field with its row of the options table: ``option(0.1, flag="--lr-student", help="...")``."""
    row = Flag(flag, help, choices, switches, run_local, sweep)
    return dataclasses.field(default=default, metadata={_FLAG: row})


@dataclass(frozen=True)
class TableRow:
    """One leaf field of a config: its dotted key, resolved annotation and :class:`Flag`."""

    key: str
    annotation: Any
    flag: Flag

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return self.flag.choices if self.flag.choices is not None else literal_choices(self.annotation)

    @property
    def is_bool(self) -> bool:
        return self.annotation is bool


@functools.cache
def option_table(cls: type) -> dict[str, TableRow]:
    """Every leaf field of the config dataclass ``cls`` by dotted key (``generator.lr``), in field order."""
    rows: dict[str, TableRow] = {}
    hints = field_types(cls)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            for key, row in option_table(annotation).items():
                rows[f"{field.name}.{key}"] = TableRow(f"{field.name}.{key}", row.annotation, row.flag)
        else:
            rows[field.name] = TableRow(field.name, annotation, field.metadata.get(_FLAG, Flag()))
    return rows


def flag_names(cls: type) -> dict[str, str]:
    """Config key -> the flag that sets it, as a message names it (``schedule.epochs`` -> ``--epochs``)."""
    return {key: row.flag.spelling for key, row in option_table(cls).items() if row.flag.spelling}


def run_local_keys(cls: type) -> frozenset[str]:
    """The keys marked run-local (:class:`Flag`): changeable on resume, never part of a run's setting."""
    return frozenset(key for key, row in option_table(cls).items() if row.flag.run_local)


def config_key(cls: type, name: str) -> str:
    """The config key that ``name`` says: a key itself (``generator.lr``), or a flag with or without its
    dashes (``lr-generator``, ``--lr-generator``); any other name is returned as it is (and refused where
    it is used as a key, naming the valid ones)."""
    rows = option_table(cls)
    if name in rows:
        return name
    wanted = "--" + name.lstrip("-")
    for key, row in rows.items():
        spelt = [*row.flag.bool_flags()] if row.is_bool else [row.flag.name]
        if wanted in spelt + [switch for switch, _, _ in row.flag.switches]:
            return key
    return name


def switch_for(cls: type, key: str, value: Any) -> str:
    """The switch flag that sets ``key`` to ``value`` (``--no-amp`` for ``runtime.amp`` none)."""
    return next(switch for switch, sets, _ in option_table(cls)[key].flag.switches if sets == value)
