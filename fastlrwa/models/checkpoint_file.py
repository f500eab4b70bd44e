"""Reading a checkpoint file that may come from anyone: weights-only first, pickled code only on request."""

from __future__ import annotations

import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from fastlrwa.errors import CheckpointError

# What torch.load raised on random, truncated and bit-flipped files (zip and legacy formats).
CORRUPT_FILE_ERRORS = (
    RuntimeError,
    pickle.UnpicklingError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    AssertionError,
    OSError,
    TypeError,
    AttributeError,
    OverflowError,
    MemoryError,
)
# The weights-only unpickler's wording for a class or function it refuses to import.
UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def read_checkpoint(path: str | Path, *, trust_pickle: bool) -> Any:
    """``torch.load`` the file onto the CPU with ``weights_only=True``.

    A file that needs unpickling of code (a whole ``nn.Module``, an ``argparse.Namespace``...) is refused
    unless ``trust_pickle``, in which case it is loaded with ``weights_only=False``. Every failure is a
    ``CheckpointError`` naming the file, the problem and the fix.
    """
    source = Path(path)
    if not source.exists():
        raise CheckpointError(f"{source}: no such file; check the checkpoint path")
    if source.is_dir():
        raise CheckpointError(
            f"{source}: is a directory; pass the checkpoint file inside it (e.g. {source / 'model.pt'})"
        )
    try:
        return _torch_load(source, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = UNSUPPORTED_GLOBAL.search(str(error))
        if refused is None:
            raise _corrupt(source, error) from error
        if not trust_pickle:
            raise CheckpointError(
                f"{source}: the file contains pickled Python code ({refused.group(1)}), which can run arbitrary code "
                "when loaded; pass --trust-pickle to load it if you trust its source"
            ) from error
    except PermissionError as error:
        raise CheckpointError(f"{source}: cannot be read (permission denied); fix the file's permissions") from error
    except CORRUPT_FILE_ERRORS as error:
        raise _corrupt(source, error) from error
    try:
        return _torch_load(source, weights_only=False)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(
            f"{source}: the pickled model needs code that is not importable here ({error}); install the package "
            "that defined it, or re-save the model as a state_dict"
        ) from error
    except CORRUPT_FILE_ERRORS as error:
        raise _corrupt(source, error) from error


def _torch_load(source: Path, *, weights_only: bool) -> Any:
    with warnings.catch_warnings():
        # Damaged files make the unpickler warn about odd pickle protocols before it fails; the
        # CheckpointError that follows says what matters.
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(source, map_location="cpu", weights_only=weights_only)


class UnreadableCheckpointError(CheckpointError):
    """The file is no PyTorch checkpoint at all (damaged, truncated, or another kind of file): where several forms
    are accepted (a teacher), the caller names them."""


def _corrupt(source: Path, error: BaseException) -> CheckpointError:
    return UnreadableCheckpointError(
        f"{source}: not a readable PyTorch checkpoint (corrupt or truncated: {type(error).__name__}); "
        "re-copy or re-save the file"
    )
