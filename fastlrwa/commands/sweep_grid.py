"""The grid of a sweep: methods x override cells x seeds, each cell a run directory and a ``train`` command.

``--set KEY=V1,V2`` adds an axis to the grid, ``--fix KEY=VALUE`` an override every run gets. KEY is a dotted
config key (``generator.lr``) or the ``train`` flag that sets it, without its dashes (``lr-generator``); either
way the run is named by the key. A run's directory is named after its cell, so the same grid always finds the
same directories:

    ROOT/<method>/<key=value,...>/seed-<seed>     (the middle level only when there are --set axes)

with the values written as the report writes them (``run_log.settings.format_value``: 1e-3 and 0.001 are
the same directory, ``generator.lr=0.001``). Fixed overrides are not in the name: a changed ``--fix``
meets directories holding another configuration, which the sweep refuses to touch.

Runs are ordered seed by seed (every method and cell at seed 0 first), so a sweep stopped half way has
comparable seeds of every setting.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastlrwa.commands.train_argv import TrainArgv
from fastlrwa.config.presets import DEFAULT_TRAIN_PRESET, train_config
from fastlrwa.config.schema import TrainConfig, apply_overrides, to_dict
from fastlrwa.config.validate import validate_train_config
from fastlrwa.errors import ConfigError
from fastlrwa.options import config_key, option_table
from fastlrwa.run_log.settings import flatten_config, format_value

# Keys the sweep sets itself, and the flag that sets them instead (``Flag.sweep`` of the options table).
RESERVED_KEYS = {key: row.flag.sweep for key, row in option_table(TrainConfig).items() if row.flag.sweep}
# Every run logs one line per epoch to its train.log instead of drawing a progress bar.
CONSTANT_TRAIN_ARGS = ("--no-progress",)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+=-]")
_MAX_NAME = 200


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its method, seed, axis values, directory and resolved config."""

    method: str
    seed: int
    values: tuple[tuple[str, Any], ...]
    run_dir: Path
    config: TrainConfig
    overrides: dict[str, Any]  # everything given to `train` on top of the preset

    @property
    def name(self) -> str:
        """The directory below the sweep's root, e.g. ``lrwa-mb/generator.lr=0.001/seed-0``."""
        return "/".join(self.run_dir.parts[-(3 if self.values else 2) :])


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-2,7"`` -> (0, 1, 2, 7)."""
    seeds: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise ConfigError(f"--seeds {text!r}: {part!r} is not a seed or a range; e.g. --seeds 0-4 or --seeds 0,1,7")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} names a seed twice; give each seed once")
    return tuple(seeds)


def _key_and_text(assignment: str, flag: str) -> tuple[str, str]:
    """The config key (a key, or a ``train`` flag with or without its dashes) and the value text."""
    name, equals, text = assignment.partition("=")
    name, text = name.strip(), text.strip()
    if not equals or not name or not text:
        raise ConfigError(
            f"{flag} {assignment!r} is not KEY=VALUE; e.g. {flag} generator.lr=1e-3 or {flag} lr-generator=1e-3"
        )
    key = config_key(TrainConfig, name)
    if key in RESERVED_KEYS:
        raise ConfigError(f"{flag} {key}: the sweep sets this key itself; use {RESERVED_KEYS[key]}")
    return key, text


def _typed(key: str, text: str, flag: str) -> Any:
    """``text`` as the type the config declares for ``key`` (a bad key or value is one error line)."""
    config = apply_overrides(TrainConfig(), {key: text}, origin=flag)
    return flatten_config(to_dict(config))[key]


def parse_axis(assignment: str) -> Axis:
    """``"generator.lr=1e-3,3e-3"`` -> Axis("generator.lr", (0.001, 0.003))."""
    key, text = _key_and_text(assignment, "--set")
    values = tuple(_typed(key, value.strip(), "--set") for value in text.split(","))
    if len({format_value(value) for value in values}) != len(values):
        raise ConfigError(f"--set {assignment!r} gives one value twice; give each value once")
    return Axis(key, values)


def parse_fixed(assignment: str) -> tuple[str, Any]:
    """``"schedule.epochs=10"`` -> ("schedule.epochs", 10)."""
    key, text = _key_and_text(assignment, "--fix")
    return key, _typed(key, text, "--fix")


def _safe(text: str) -> str:
    """A path component: unsafe characters become "_", with a short hash of the original to keep names apart."""
    safe = _SAFE_NAME.sub("_", text)
    if safe != text or len(safe) > _MAX_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        safe = f"{safe[:_MAX_NAME]}-{digest}"
    return safe


def cell_dir(root: Path, method: str, values: tuple[tuple[str, Any], ...], seed: int) -> Path:
    """ROOT/method[/key=value,...]/seed-N (see the module docstring)."""
    levels = [_safe(method)]
    if values:
        levels.append(",".join(_safe(f"{key}={format_value(value)}") for key, value in values))
    return root.joinpath(*levels, f"seed-{seed}")


@dataclass(frozen=True)
class Grid:
    """A parsed sweep: what it runs and where."""

    preset: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    axes: tuple[Axis, ...]
    fixed: dict[str, Any]
    root: Path

    @classmethod
    def parse(
        cls,
        *,
        preset: str | None,
        methods: str | None,
        seeds: str,
        axes: tuple[str, ...],
        fixed: tuple[str, ...],
        root: str | None,
        train_argv: TrainArgv,
    ) -> Grid:
        """The grid of the ``sweep`` flags; a key ``train`` has no flag for is refused (see ``train_argv``)."""
        preset = preset or DEFAULT_TRAIN_PRESET
        base = train_config(preset)
        parsed_axes = tuple(parse_axis(axis) for axis in axes)
        parsed_fixed = dict(parse_fixed(assignment) for assignment in fixed)
        train_argv.check_keys([axis.key for axis in parsed_axes], "--set")
        train_argv.check_keys(parsed_fixed, "--fix")
        keys = [axis.key for axis in parsed_axes]
        repeated = sorted({key for key in keys if keys.count(key) > 1} | (set(keys) & set(parsed_fixed)))
        if repeated:
            raise ConfigError(
                f"{repeated[0]} is given more than once in --set/--fix; give each key once "
                "(several values of one --set: --set KEY=V1,V2)"
            )
        if len(parsed_fixed) != len(fixed):
            raise ConfigError("a key is given twice with --fix; give each key once")
        names = tuple(name.strip() for name in (methods or base.method).split(","))
        if len(set(names)) != len(names) or not all(names):
            raise ConfigError(f"--methods {methods!r}: give each method once, comma-separated, e.g. lrwa-mb,mb-dfkd")
        return cls(
            preset,
            names,
            parse_seeds(seeds),
            parsed_axes,
            parsed_fixed,
            Path(root) if root else Path("sweeps") / preset,
        )

    def value_cells(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the axes' values, the first axis varying slowest."""
        cells: list[tuple[tuple[str, Any], ...]] = [()]
        for axis in self.axes:
            cells = [cell + ((axis.key, value),) for cell in cells for value in axis.values]
        return cells

    def cells(self) -> list[Cell]:
        """Every run, seed by seed; each config resolved and validated (a bad value fails before any run)."""
        cells = []
        for seed in self.seeds:
            for values in self.value_cells():
                for method in self.methods:
                    run_dir = cell_dir(self.root, method, values, seed)
                    overrides = {
                        "method": method,
                        "runtime.seed": seed,
                        "runtime.out": str(run_dir),
                        **self.fixed,
                        **dict(values),
                    }
                    config = train_config(self.preset, {**overrides, "runtime.progress": False})
                    validate_train_config(config)
                    cells.append(Cell(method, seed, values, run_dir, config, overrides))
        return cells

    def train_command(self, cell: Cell, train_argv: TrainArgv, *extra: str) -> list[str]:
        """``fastlrwa train`` arguments (without the program) that run ``cell``."""
        preset_values = flatten_config(to_dict(train_config(self.preset)))
        return [
            "train",
            "--preset",
            self.preset,
            *train_argv.argv(cell.overrides, preset_values),
            *CONSTANT_TRAIN_ARGS,
            *extra,
        ]

    def command_line(
        self, *, jobs: int | None, threads: int | None, device: str, compare: str | None, resume: bool
    ) -> str:
        """This sweep as a ``fastlrwa sweep`` command (for the "continue with" hint)."""
        words = [
            "fastlrwa",
            "sweep",
            "--preset",
            self.preset,
            "--methods",
            ",".join(self.methods),
            "--seeds",
            ",".join(map(str, self.seeds)),
        ]
        for axis in self.axes:
            words += ["--set", f"{axis.key}={','.join(format_value(value) for value in axis.values)}"]
        for key, value in self.fixed.items():
            words += ["--fix", f"{key}={format_value(value)}"]
        words += ["--root", str(self.root)]
        if jobs is not None:
            words += ["--jobs", str(jobs)]
        if threads is not None:
            words += ["--threads", str(threads)]
        if device != "auto":
            words += ["--device", device]
        if compare is not None:
            words += ["--compare", compare]
        if resume:
            words.append("--resume")
        return shlex.join(words)
