"""Package attributes imported on first use (PEP 562), so that importing a light submodule stays light.

``fastlrwa.data.catalog`` or ``fastlrwa.models.names`` must not pull in torch, torchvision and scikit-learn
through their package's ``__init__``: the command line reads them to check its input in the first second.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, which exports the names ``modules[m]`` of submodule ``m``.

    A package writes ``__getattr__, __dir__, __all__ = lazy_exports(__name__, {"catalog": ("dataset_info",)})``.
    An exported name must not also be a submodule's name: importing that submodule would bind the module
    to the package attribute in its place.
    """
    exports = {name: f"{package}.{module}" for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
