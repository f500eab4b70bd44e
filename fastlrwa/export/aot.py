"""From an eval-mode classifier to an AOTInductor package: ``torch.export`` then ``aoti_compile_and_package``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch._dynamo.exc
import torch._inductor
import torch.nn as nn
from torch.export import Dim, ExportedProgram

from fastlrwa.errors import ConfigError
from fastlrwa.export.fold import fold_batchnorm

# The example batch when the batch dimension is dynamic: export specialises sizes 0 and 1, so a
# dynamic dimension is traced with a size that is neither.
DYNAMIC_EXAMPLE_BATCH = 2
BATCH_DIM = Dim("batch", min=1)
# Package metadata that fastlrwa-infer (cpp/fastlrwa_infer.cpp) checks its command line against, since
# the compiled model reads its input without checking the shape.
IMAGE_SHAPE_KEY = "fastlrwa.image_shape"
BATCH_KEY = "fastlrwa.batch"


def export_classifier(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch: int | None = None,
    device: torch.device = torch.device("cpu"),
) -> ExportedProgram:
    """``torch.export`` the logits of ``model`` (in eval mode) with its BatchNorms folded (``fold_batchnorm``).

    The program takes float32 images ``[N, *input_shape]`` on ``device``; ``N`` is dynamic when ``batch``
    is ``None``, else fixed at ``batch``. Raises ``ConfigError`` when the model cannot be exported.
    """
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {batch}; or leave it out for any batch size")
    folded = fold_batchnorm(model).to(device)
    # Export traces shapes, not values; zeros leave the global random state alone.
    example = torch.zeros((batch or DYNAMIC_EXAMPLE_BATCH, *input_shape), device=device)
    dynamic_shapes = None if batch is not None else ({0: BATCH_DIM},)
    try:
        return torch.export.export(folded, (example,), dynamic_shapes=dynamic_shapes)
    except torch._dynamo.exc.TorchDynamoException as error:
        raise ConfigError(
            f"{getattr(model, 'arch', type(model).__name__)} cannot be exported ({str(error).splitlines()[0]}); "
            "export a student of a registered architecture"
        ) from error


def runner_metadata(input_shape: tuple[int, int, int], batch: int | None) -> dict[str, str]:
    """The package metadata fastlrwa-infer needs: ``"C,H,W"`` and the fixed batch size (``""`` for any)."""
    return {
        IMAGE_SHAPE_KEY: ",".join(str(size) for size in input_shape),
        BATCH_KEY: "" if batch is None else str(batch),
    }


def write_package(program: ExportedProgram, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> Path:
    """Compile ``program`` with AOTInductor into the ``.pt2`` package ``path``, replacing it atomically.

    ``metadata`` (string keys and values) is stored in the package, where the C++ loader's
    ``get_metadata()`` returns it next to AOTInductor's own keys such as ``AOTI_DEVICE_KEY``.

    The package is built in a temporary folder beside ``path`` (under its final file name, which the
    package's archive is named after) and renamed over ``path`` once complete, so a reader (or a crash)
    never sees a half-written package.
    """
    path = Path(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        staged = staging / path.name
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(staged), inductor_configs={"aot_inductor.metadata": dict(metadata or {})}
        )
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
