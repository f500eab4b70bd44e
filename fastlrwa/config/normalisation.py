"""The normalisation a teacher from outside fastlrwa was trained with, read from ``--teacher-mean`` and
``--teacher-std`` (torchvision's ``Normalize`` convention, on pixels in [0, 1]). Torch-free: checked before
any work."""

from __future__ import annotations

from fastlrwa.config.schema import TeacherConfig
from fastlrwa.data.catalog import DatasetInfo
from fastlrwa.errors import ConfigError

MEAN_FLAG, STD_FLAG = "--teacher-mean", "--teacher-std"


def teacher_normalisation(config: TeacherConfig, info: DatasetInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel: the flags' values, each defaulting to the dataset's."""
    mean = _channels(config.mean, MEAN_FLAG, info) if config.mean is not None else tuple(info.mean)
    std = _channels(config.std, STD_FLAG, info) if config.std is not None else tuple(info.std)
    if any(value <= 0 for value in std):
        raise ConfigError(f"{STD_FLAG} {config.std}: every standard deviation must be > 0")
    return mean, std


def _channels(text: str, flag: str, info: DatasetInfo) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers, e.g. {flag} 0.5") from None
    if len(values) == 1 and info.channels > 1:
        values *= info.channels
    if len(values) != info.channels:
        raise ConfigError(
            f"{flag} {text}: {len(values)} values for {info.name}'s {info.channels} channel(s); give one value, "
            f"or one per channel"
        )
    return values
