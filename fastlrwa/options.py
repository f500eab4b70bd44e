"""Typed option objects: frozen dataclasses whose choices are ``Literal`` types, checked once, when built.

Each update, loss and part of a run keeps its options in one such dataclass next to the code that
uses them; the run's config composes them (``fastlrwa.config.schema``). The ``Literal`` of a field
is the one list of its allowed values: the check below, the command line's ``click.Choice`` and
every message naming the choices read it from there, so adding a value is a change to the
``Literal`` and to the code that handles it.

Torch-free: the command line reads these types to check its input before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
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
