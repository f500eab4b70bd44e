"""The user's own teacher class: an ``nn.Module`` built by a callable the user names, its weights loaded from
a state_dict read with ``torch.load(weights_only=True)``.

Importing the user's module runs its code: that is the user's explicit choice (``--teacher-factory``), never
made for them. ``MODULE_OR_FILE.py:CALLABLE`` names either an importable module (``mypkg.nets:build``) or a
Python file (``./mynet.py:Net``), and the callable is called with no arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from fastlrwa.errors import ConfigError
from fastlrwa.models.checkpoint import load_checked_state_dict, unwrap_state_dict, without_saved_prefixes
from fastlrwa.models.checkpoint_file import read_checkpoint

FACTORY_FLAG = "--teacher-factory"


def build_from_factory(spec: str) -> nn.Module:
    """Call the factory ``spec`` names; a spec that does not import or a result that is no module is a
    ``ConfigError`` naming the fix."""
    target, colon, name = spec.rpartition(":")
    if not colon or not target or not name:
        raise ConfigError(f"{FACTORY_FLAG} {spec!r}: expected MODULE_OR_FILE.py:CALLABLE, e.g. mynet.py:Net")
    module = _import(target, spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"{FACTORY_FLAG} {spec}: {target} has no callable {name!r}; name a class or function in it")
    try:
        model = factory()
    except Exception as error:  # the user's code may raise anything
        raise ConfigError(
            f"{FACTORY_FLAG} {spec}: calling {name}() failed ({type(error).__name__}: {error}); it must build "
            "the model with no arguments"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{FACTORY_FLAG} {spec}: {name}() returned a {type(model).__name__}, not a torch.nn.Module; "
            "make it return the model"
        )
    return model


def load_user_state_dict(path: Path, model: nn.Module, spec: str) -> None:
    """Load the state_dict at ``path`` (weights only) into ``model``, strictly; a mismatch is one line."""
    state_dict, _ = unwrap_state_dict(path, read_checkpoint(path, trust_pickle=False))
    load_checked_state_dict(
        path,
        model,
        without_saved_prefixes(state_dict),
        fix="pass the factory of the class the weights were saved from",
        what=f"the model {spec} builds",
    )


def _import(target: str, spec: str) -> Any:
    try:
        if target.endswith(".py"):
            file = Path(target).expanduser()
            if not file.is_file():
                raise ConfigError(f"{FACTORY_FLAG} {spec}: no file {file}; check the path before the ':'")
            name = f"fastlrwa_user_teacher_{file.stem}"
            loader_spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(loader_spec)
            # Registered before it runs, so that dataclasses and pickling inside the user's file find it.
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
            return module
        return importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as error:  # an import runs the user's code, which may raise anything
        raise ConfigError(
            f"{FACTORY_FLAG} {spec}: {target} does not import ({type(error).__name__}: {error}); fix it, or run "
            "from the folder that holds it"
        ) from None
