"""``fastlrwa report RUN --samples FILE.png``: the run's generator, loaded from its checkpoint, drawn on the
same fixed latents as the run's TensorBoard grid, with the teacher's predicted class over each sample.

The checkpoint is read with ``weights_only=True``. The teacher is the file the run recorded, used only
when it is still there with the recorded SHA-256; otherwise the grid has no labels and a line says why.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from fastlrwa.atomic_io import atomic_write_with
from fastlrwa.config.input_space import run_input
from fastlrwa.config.schema import TrainConfig, from_dict
from fastlrwa.data import DatasetInfo
from fastlrwa.errors import CheckpointError, ConfigError, UserFacingError
from fastlrwa.trainer.build import run_generator
from fastlrwa.trainer.checkpoint import CHECKPOINT_FORMAT
from fastlrwa.trainer.diagnostics import fixed_latents, generated_samples, image_grid
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.teacher import file_sha256, load_frozen_teacher

# Samples are enlarged to at least this many pixels a side, so that a label fits over each.
MIN_CELL = 64
DEFAULT_COUNT = 64
PADDING = 2


def _read_state(run_dir: Path) -> dict:
    path = RunDir(run_dir).checkpoint
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no checkpoint ({path.name}); --samples needs a run that finished an epoch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}); it is damaged") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fastlrwa training checkpoint; pass the --out directory of a run")
    return state


def _teacher_labels(state: dict, config: TrainConfig, info: DatasetInfo, images: torch.Tensor) -> list[str] | None:
    """The teacher's predicted class of each image, or None (with a line on stderr) when it is not available."""
    recorded = state.get("teacher", {})
    path = Path(recorded.get("path", ""))
    if not path.is_file() or file_sha256(path) != recorded.get("sha256"):
        print(
            f"note: the run's teacher {path} is missing or changed; the samples are drawn without labels",
            file=sys.stderr,
        )
        return None
    try:
        teacher, _ = load_frozen_teacher(path, config.teacher, info, torch.device("cpu"))
    except UserFacingError as error:
        print(f"note: the samples are drawn without labels: {error}", file=sys.stderr)
        return None
    with torch.no_grad():
        predicted = teacher(images).argmax(dim=1).tolist()
    names = info.class_names
    return [names[k] if k < len(names) else str(k) for k in predicted]


def samples_grid(run_dir: str | os.PathLike, count: int | None = None):
    """The labelled grid (a PIL image) of the run in ``run_dir``: ``count`` samples (default: the run's
    ``diagnostics.sample_grid``, or 64 where that is 0), ceil(sqrt(count)) per row."""
    from PIL import ImageDraw
    from torchvision.transforms.functional import to_pil_image

    state = _read_state(Path(run_dir))
    config = from_dict(TrainConfig, state["config"])
    info = run_input(config.data, config.teacher)
    generator = run_generator(config, info)
    generator.load_state_dict(state["generator"])
    count = count or config.diagnostics.sample_grid or DEFAULT_COUNT
    latents = fixed_latents(count, config.generator.latent_dim, config.runtime.seed, torch.device("cpu"))
    images = generated_samples(generator, latents)
    labels = _teacher_labels(state, config, info, images)
    scale = math.ceil(MIN_CELL / info.image_size)
    cell = info.image_size * scale
    picture = to_pil_image(image_grid(F.interpolate(images, scale_factor=scale, mode="nearest")))
    if labels is not None:
        draw = ImageDraw.Draw(picture)
        per_row = math.ceil(math.sqrt(count))
        for index, label in enumerate(labels):
            x = PADDING + (index % per_row) * (cell + PADDING)
            y = PADDING + (index // per_row) * (cell + PADDING)
            left, top, right, bottom = draw.textbbox((x + 1, y), label)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
            draw.text((x + 1, y), label, fill=(255, 255, 0))
    return picture


def write_samples(run_dir: str | os.PathLike, out: str | os.PathLike, count: int | None = None) -> Path:
    """Write :func:`samples_grid` of ``run_dir`` to ``out`` as a PNG, atomically."""
    picture = samples_grid(run_dir, count)
    return atomic_write_with(out, lambda handle: picture.save(handle, format="PNG"))
