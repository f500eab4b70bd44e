"""What makes two runs the same setting, and how a setting is named (pure, no I/O).

A run's ``config.json`` records its whole resolved config. Two runs are seeds of one *setting* when
their configs agree on every key that changes what is computed; the run-local keys do not (where the
run is written, which device, the progress display, evaluation batching, compilation, a pause with
``--stop-after``, where the data lives, how often a diagnostic is measured: ``Flag.run_local`` in the
options table, ``config.schema.RUN_LOCAL_KEYS``), so they never split a setting. The report also ignores the
method and the seed (kept apart as their own columns) and the teacher's path (the teacher is identified
by its file's hash in the table block), and the config sections the run's method never reads (the LRWA
options of an MB-DFKD run: ``config.methods.unread_config_sections``).

A setting is named by the keys on which it differs from the others it is shown with, as
``key=value`` with ``format_value``: ``lrwa-mb · generator.lr=0.001``. ``fastlrwa sweep`` names its
run directories with the same function, so a directory and its table row read the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastlrwa.config.methods import unread_config_sections
from fastlrwa.config.presets import METHOD_PRESETS, TRAIN_PRESETS, train_config
from fastlrwa.config.schema import RUN_LOCAL_KEYS, to_dict

REPORT_IGNORED_KEYS = RUN_LOCAL_KEYS | {"method", "runtime.seed", "teacher.path"}

Setting = tuple[tuple[str, Any], ...]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"schedule": {"epochs": 4}}`` -> ``{"schedule.epochs": 4}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


def setting_of(config: Mapping[str, Any], ignored: Iterable[str] = REPORT_IGNORED_KEYS) -> Setting:
    """The sorted ``(dotted key, value)`` pairs of a nested config that define its setting: less ``ignored``,
    and less the sections its method never reads (an MB-DFKD run is not labelled by LRWA's options)."""
    ignored = frozenset(ignored)
    unread = unread_config_sections(str(config.get("method", "")))
    return tuple(
        sorted(
            (key, _hashable(value))
            for key, value in flatten_config(config).items()
            if key not in ignored and not key.startswith(unread)
        )
    )


def format_value(value: Any) -> str:
    """A config value as written in a setting's name: floats in their shortest exact form (1e-05, 0.001)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _section(key: str) -> str:
    return key.split(".", 1)[0]


def differing_keys(settings: Iterable[Setting]) -> list[str]:
    """The keys whose values are not the same in every setting that reads them. A setting with no key of a
    section (an MB-DFKD run has no ``lrwa.`` keys, ``setting_of``) does not read it; one with the section but
    without the key (a run recorded before the key existed) counts as differing."""
    settings = [dict(setting) for setting in settings]
    sections = [{_section(key) for key in setting} for setting in settings]
    keys = sorted({key for setting in settings for key in setting})
    missing = object()
    return [
        key
        for key in keys
        if len(
            {
                repr(setting.get(key, missing))
                for setting, read in zip(settings, sections, strict=True)
                if _section(key) in read
            }
        )
        > 1
    ]


def same_cell(a: Setting, b: Setting, ignored: Iterable[str] = ()) -> bool:
    """Whether two settings agree on every key of the sections both read (a key one of them lacks included),
    less ``ignored`` (``method_owned_keys``): the same sweep cell, whatever options their methods do not share
    (LRWA's, the joint update's)."""
    values_a, values_b = dict(a), dict(b)
    shared = {_section(key) for key in values_a} & {_section(key) for key in values_b}
    ignored = frozenset(ignored)
    missing = object()
    return all(
        values_a.get(key, missing) == values_b.get(key, missing)
        for key in values_a.keys() | values_b.keys()
        if _section(key) in shared and key not in ignored
    )


def method_owned_keys(dataset: str, method_a: str, a: Setting, method_b: str, b: Setting) -> frozenset[str]:
    """The keys on which two runs of different methods may differ and still be one sweep cell: a key that one
    of the methods never reads and the other run has (ZSKD's ``schedule.gen_steps``), and a key a method sets
    for itself on the preset named like the dataset (``config.presets.METHOD_PRESETS``: ZSKD's schedule and
    optimizer) where each run holds the value its own method gives it there. A value set by a flag (the same
    ``--set schedule.batch_size=...`` for both methods) is compared as any other."""
    if method_a == method_b:
        return frozenset()
    values_a, values_b = dict(a), dict(b)
    unread = unread_config_sections(method_a) + unread_config_sections(method_b)
    keys = {key for key in values_a.keys() ^ values_b.keys() if key.startswith(unread)}
    own = METHOD_PRESETS.get(dataset, {})
    preset_keys = set(flatten_config(own.get(method_a, {}))) | set(flatten_config(own.get(method_b, {})))
    if dataset in TRAIN_PRESETS and preset_keys:
        default_a, default_b = (
            flatten_config(to_dict(train_config(dataset, {"method": method}))) for method in (method_a, method_b)
        )
        keys |= {
            key
            for key in preset_keys
            if values_a.get(key) == _hashable(default_a.get(key)) and values_b.get(key) == _hashable(default_b.get(key))
        }
    return frozenset(keys)


def cell_label(setting: Setting, keys: Iterable[str]) -> str:
    """``key=value`` of ``keys`` joined by ", " (empty when no key is given). A key missing from a section the
    setting has reads "unset"; keys of sections it does not read (``differing_keys``) are left out."""
    values = dict(setting)
    sections = {_section(key) for key in values}
    return ", ".join(
        f"{key}={format_value(values[key]) if key in values else 'unset'}" for key in keys if _section(key) in sections
    )


def setting_name(method: str, setting: Setting, cell_keys: Iterable[str]) -> str:
    """``method`` or ``method · key=value, ...`` for the keys that tell a block's settings apart."""
    cell = cell_label(setting, cell_keys)
    return f"{method} · {cell}" if cell else method
