"""What the teacher of a run takes and tells apart: a dataset's (``--dataset``), or, where no dataset is named, the
input a user describes with ``--num-classes``, ``--image-size`` and ``--in-channels`` (a teacher of their own with
no dataset fastlrwa knows). Torch-free: checked, with the rest of the config, before any work.

With no dataset the run's normalisation is the teacher's (``--teacher-mean``/``--teacher-std``, default mean 0 and
std 1: the pixels in [0, 1] as they are): the generator's images, standardised per channel by its last BatchNorm,
are then inputs in the teacher's own space, and a ``--test-data`` set is normalised as the teacher was trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from fastlrwa.config.normalisation import teacher_normalisation
from fastlrwa.config.schema import DataConfig, TeacherConfig
from fastlrwa.data.catalog import DatasetInfo, dataset_info

# The DataConfig keys that describe the teacher's input where no dataset is named.
INPUT_KEYS = ("data.num_classes", "data.image_size", "data.in_channels")
# The name a run of no dataset goes by in its config.json, its report and its messages.
NO_DATASET = "custom"
# The generator upsamples twice by 2 from image_size / 4, from at least 2x2.
SIZE_STEP, SMALLEST_SIZE = 4, 8


def without_dataset(overrides: Mapping[str, object]) -> bool:
    """Whether these command-line overrides describe the teacher's input instead of naming a dataset: then a
    preset's dataset is dropped (``presets.train_config``)."""
    return "data.dataset" not in overrides and any(key in overrides for key in INPUT_KEYS)


def run_input(data: DataConfig, teacher: TeacherConfig) -> DatasetInfo:
    """The description of the models' input and classes: the dataset's, or the one given with no dataset (its
    normalisation the teacher's, its classes named ``0``..``C-1``); call it on a validated config."""
    if data.dataset is not None:
        return dataset_info(data.dataset)
    channels = data.in_channels
    pixels_as_they_are = DatasetInfo(
        NO_DATASET,
        data.num_classes,
        channels,
        data.image_size,
        (0.0,) * channels,
        (1.0,) * channels,
        tuple(str(k) for k in range(data.num_classes)),
        augment=False,
    )
    mean, std = teacher_normalisation(teacher, pixels_as_they_are)
    return dataclasses.replace(pixels_as_they_are, mean=mean, std=std)


def input_value(data: DataConfig, key: str) -> int | None:
    """The value of one of :data:`INPUT_KEYS`."""
    return getattr(data, key.partition(".")[2])
