"""The house reads top-down: no module imports one from a room above its own.

commands -> trainer -> report, export -> run_log -> config -> updates / replay / losses -> models / data /
kernels -> the foundation (errors, options, runtime, ...). Imports are read from the source with ``ast``, those
inside functions included (a lazy import runs upward just the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Rooms from the top (0) down; a module may import from its own room and from the rooms below it.
ROOMS: dict[str, int] = {
    "__main__": 0,
    "cli": 0,
    "commands": 0,
    "trainer": 1,
    "report": 2,
    "export": 2,
    "run_log": 3,
    "config": 4,
    "updates": 5,
    "replay": 5,
    "losses": 5,
    "models": 6,
    "data": 6,
    "kernels": 6,
    "distributed": 7,
    "progress": 7,
    "runtime": 7,
    "cpu_runtime": 7,
    "atomic_io": 7,
    "paths": 7,
    "errors": 8,
    "options": 8,
    "lazy": 8,
    "__init__": 8,
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted((ROOT / "fastlrwa").rglob("*.py")):
        found[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return found


def _room(module: str) -> str:
    """The room of ``fastlrwa.X...``: its first part below the package (``fastlrwa`` itself: ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported fastlrwa module) for every import in the file, relative ones resolved."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            elif node.module:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "fastlrwa" or name.startswith("fastlrwa.")]


def test_every_room_is_placed():
    rooms = {_room(module) for module in _modules()}
    assert rooms <= set(ROOMS), f"place these in ROOMS: {sorted(rooms - set(ROOMS))}"


def test_no_import_runs_up_the_house():
    upward = []
    for module, path in _modules().items():
        own = ROOMS[_room(module)]
        for line, imported in _imports(module, path):
            if ROOMS[_room(imported)] < own:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({_room(module)}) imports {imported}")
    assert not upward, "imports running up the house:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from fastlrwa.trainer.loop import Trainer\n", ["fastlrwa.trainer.loop"]),
        ("def f():\n    import fastlrwa.commands.train\n", ["fastlrwa.commands.train"]),
        ("from . import backend\nfrom .js import fused_js\n", ["fastlrwa.kernels", "fastlrwa.kernels.js"]),
        ("import torch\nfrom typing import Any\n", []),
    ],
)
def test_imports_are_read_with_functions_and_relative_ones(tmp_path, source, expected):
    path = tmp_path / "mae.py"
    path.write_text(source)
    assert [name for _, name in _imports("fastlrwa.kernels.mae", path)] == expected


def test_an_upward_import_would_be_caught(tmp_path):
    path = tmp_path / "distill.py"
    path.write_text("from fastlrwa.trainer.build import RunParts\n")
    [(line, imported)] = _imports("fastlrwa.losses.distill", path)
    assert ROOMS[_room(imported)] < ROOMS[_room("fastlrwa.losses.distill")]


def test_every_package_is_installed():
    """Each folder of the package is listed in pyproject.toml's packages, so that a wheel carries it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "fastlrwa").rglob("__init__.py")}
    assert folders == listed
