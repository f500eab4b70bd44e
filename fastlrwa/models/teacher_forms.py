"""Which of the accepted forms a teacher file is, told by its content, and loading each form safely.

- ``torchscript``: a ``torch.jit.save`` archive (a zip with ``code/`` and ``constants.pkl``), read by
  ``torch.jit.load``, whose unpickler rebuilds TorchScript objects only: no Python code of the file runs; then
  converted to an exported program where torch's converter can (``fastlrwa.models.script_conversion``), so that
  it has the exported form's modules to hook.
- ``exported``: a ``torch.export.save`` program (a zip with ``archive_format``), read by ``torch.export.load``
  (a serialised graph and its weights, no pickled Python); its BatchNorm and last Linear calls are made
  modules again (``fastlrwa.models.exported_graph``), for the hooks of DFQ and the activation prior.
- ``checkpoint``: anything else ``torch.load`` may read: a fastlrwa model file or a state_dict
  (``fastlrwa.models.checkpoint``), or, with a factory, the state_dict of the user's own class
  (``fastlrwa.models.user_factory``).

The extension is not looked at: a ``.pt`` may hold any of the three.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from fastlrwa.errors import CheckpointError
from fastlrwa.models.exported_graph import materialise_modules
from fastlrwa.models.script_conversion import script_teacher

TeacherForm = Literal["torchscript", "exported", "checkpoint"]


def teacher_form(path: Path) -> TeacherForm:
    """The form of the file at ``path`` from the names inside its zip archive (a legacy, non-zip
    ``torch.save`` file is a checkpoint)."""
    if not zipfile.is_zipfile(path):
        return "checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "checkpoint"  # read_checkpoint says what is wrong with it
    # Every entry sits under one root folder, named after the file when it was saved.
    inner = {name.partition("/")[2] for name in names}
    if "archive_format" in inner:
        return "exported"
    if "constants.pkl" in inner and any(name.startswith("code/") for name in inner):
        return "torchscript"
    return "checkpoint"


def load_graph_teacher(path: Path, form: TeacherForm, input_shape: tuple[int, ...]) -> tuple[nn.Module, str]:
    """The module of a TorchScript or exported teacher file, on the CPU, and how it runs (for a TorchScript file:
    converted, or why not; "" for an exported one); ``input_shape`` is one image's. Every failure to read the
    file is a ``CheckpointError``."""
    try:
        if form == "torchscript":
            with warnings.catch_warnings():
                # torch.jit.load's deprecation notice: the file is what the user has, nothing to act on here.
                warnings.simplefilter("ignore", FutureWarning)
                script = torch.jit.load(str(path), map_location="cpu")
        else:
            return materialise_modules(torch.export.load(str(path)).module()), ""
    except Exception as error:  # both loaders raise many types on a damaged archive
        fix = "re-save it with torch.jit.save" if form == "torchscript" else "re-save it with torch.export.save"
        raise CheckpointError(
            f"{path}: not a loadable {'TorchScript' if form == 'torchscript' else 'torch.export'} file "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); {fix}"
        ) from None
    converted = script_teacher(script, input_shape)
    return converted.module, converted.note
