"""Unpickling data files that hold only numpy arrays, lists, dicts, strings and numbers.

CIFAR's python batches are pickles. A plain ``pickle.load`` runs whatever a file names, so a
tampered download could execute code; this unpickler resolves only the globals numpy needs to
rebuild an array and refuses everything else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from fastlrwa.data.split import CorruptDataError

_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # numpy < 2 wrote numpy.core; numpy >= 2 writes numpy._core (protocol 5: _frombuffer).
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Python 3 pickles bytes this way under protocol 2.
        ("_codecs", "encode"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_numpy_pickle(path: Path) -> Any:
    """The object pickled in ``path``; ``latin1`` decodes the Python 2 byte strings CIFAR was saved with."""
    try:
        with open(path, "rb") as handle:
            return _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CorruptDataError(f"{path}: not a readable data pickle ({exc}); re-download the file") from None
