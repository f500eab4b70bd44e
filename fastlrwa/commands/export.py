"""``fastlrwa export``: a model checkpoint to ``DIR/model.pt2`` (AOTInductor) and ``DIR/meta.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.export.aot import export_classifier, runner_metadata, write_package
from fastlrwa.export.metadata import export_metadata, file_sha256
from fastlrwa.models import load_checkpoint_with_meta
from fastlrwa.paths import require_writable_dir
from fastlrwa.runtime import configure_compile_cache, resolve_device

PACKAGE_NAME = "model.pt2"
METADATA_NAME = "meta.json"


def run_export(
    checkpoint: str,
    out: str,
    *,
    trust_pickle: bool = False,
    batch: int | None = None,
    device: str = "cpu",
    arch: str | None = None,
) -> dict[str, Any]:
    """Export the classifier in ``checkpoint`` (a training run's ``student.pt`` or a pretrained ``model.pt``).

    Writes ``out/model.pt2``, the eval-mode model with BatchNorm folded, compiled by AOTInductor for
    ``device`` (``cpu``, ``cuda`` or ``cuda:N``; ``auto`` picks CUDA when present), taking float32
    ``[N, C, H, W]`` images with ``N`` any size (or fixed at ``batch``), and then ``out/meta.json``
    (see ``export_metadata``); ``meta.json`` is written last, so its presence means the export is
    complete. ``arch`` is needed only for a bare state_dict. Prints a progress line on stderr and one
    summary line on stdout, and returns the summary as a dict. Problems the user can fix are
    ``CheckpointError`` or ``ConfigError``.
    """
    target = resolve_device(device)
    require_writable_dir(out, "--out")
    model, meta = load_checkpoint_with_meta(checkpoint, arch=arch, trust_pickle=trust_pickle)
    checkpoint_sha256 = file_sha256(checkpoint)
    configure_compile_cache()
    click.echo(
        f"exporting {meta.arch} for {target.type}: compiling with AOTInductor (minutes on a small CPU)...", err=True
    )
    started = time.perf_counter()
    input_shape = (meta.in_channels, meta.image_size, meta.image_size)
    program = export_classifier(model.eval(), input_shape, batch=batch, device=target)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    metadata_path = folder / METADATA_NAME
    # A meta.json left from an earlier export must not describe the package being replaced.
    metadata_path.unlink(missing_ok=True)
    package = write_package(program, folder / PACKAGE_NAME, metadata=runner_metadata(input_shape, batch))
    atomic_write_json(
        metadata_path,
        export_metadata(
            meta,
            model_file=PACKAGE_NAME,
            checkpoint=checkpoint,
            checkpoint_sha256=checkpoint_sha256,
            batch=batch,
            device=target,
        ),
    )
    seconds = time.perf_counter() - started
    summary = {
        "model": str(package),
        "meta": str(metadata_path),
        "arch": meta.arch,
        "num_classes": meta.num_classes,
        "input_shape": list(input_shape),
        "batch": batch,
        "device": target.type,
        "seconds": seconds,
    }
    shape = "x".join(str(size) for size in input_shape)
    click.echo(
        f"exported {meta.arch} ({meta.num_classes} classes, input {shape}, batch {batch or 'any'}, {target.type}) "
        f"to {package} and {metadata_path} in {seconds:.1f}s"
    )
    return summary
