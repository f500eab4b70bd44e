"""``ModelMeta``: what a checkpoint says about its model, stored as plain types only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastlrwa.data.catalog import DatasetInfo

PLAIN_TYPES = (bool, str, int, float)


@dataclass(frozen=True)
class ModelMeta:
    """Architecture and input description saved with a model.

    ``dataset``, ``mean`` and ``std`` (the per-channel normalisation the model was trained with) are
    ``None`` when unknown, e.g. for a bare state_dict from another program.
    """

    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    dataset: str | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def for_dataset(cls, arch: str, info: "DatasetInfo") -> "ModelMeta":
        """The description of an ``arch`` model trained on the dataset ``info`` describes."""
        return cls(
            arch=arch,
            num_classes=info.num_classes,
            in_channels=info.channels,
            image_size=info.image_size,
            dataset=info.name,
            mean=tuple(info.mean),
            std=tuple(info.std),
        )

    def to_plain(self) -> dict[str, Any]:
        """A dict of str/int/float/list/None, loadable by ``torch.load(weights_only=True)``."""
        return {
            "arch": self.arch,
            "num_classes": int(self.num_classes),
            "in_channels": int(self.in_channels),
            "image_size": int(self.image_size),
            "dataset": self.dataset,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
        }

    @classmethod
    def from_plain(cls, data: Any) -> "ModelMeta":
        """Inverse of ``to_plain``; raises ``ValueError`` naming the first malformed field."""
        if not isinstance(data, dict):
            raise ValueError(f"metadata is a {type(data).__name__}, not a dict")
        if not isinstance(data.get("arch"), str) or not data["arch"]:
            raise ValueError("'arch' is missing or not a name")
        sizes = {}
        for key in ("num_classes", "in_channels", "image_size"):
            value = data.get(key)
            if type(value) is not int or value < 1:
                raise ValueError(f"{key!r} is {value!r}, not a positive integer")
            sizes[key] = value
        dataset = data.get("dataset")
        if dataset is not None and not isinstance(dataset, str):
            raise ValueError(f"'dataset' is {dataset!r}, not a name")
        statistics = {}
        for key in ("mean", "std"):
            value = data.get(key)
            if value is not None:
                if (
                    not isinstance(value, (list, tuple))
                    or len(value) != sizes["in_channels"]
                    or not all(type(v) in (int, float) for v in value)
                ):
                    raise ValueError(f"{key!r} is {value!r}, not {sizes['in_channels']} numbers")
                value = tuple(float(v) for v in value)
            statistics[key] = value
        return cls(arch=data["arch"], dataset=dataset, **sizes, **statistics)


def plain_copy(value: Any, where: str = "extra") -> Any:
    """A copy of ``value`` made of str/bool/None/int/float/list/dict only (numpy scalars become numbers).

    Anything else (a tensor, a path, an object) raises ``TypeError`` naming where it sits, because
    ``torch.load(weights_only=True)`` could not read it back.
    """
    if value is None or type(value) in PLAIN_TYPES:
        return value
    # Subclasses (str enums, numpy float64) would be pickled as their own class, which
    # weights_only loading refuses, so they are converted to the base type.
    for plain in PLAIN_TYPES:
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, (list, tuple)):
        return [plain_copy(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; checkpoint extras must be plain data")
            copied[str(key)] = plain_copy(item, f"{where}[{key!r}]")
        return copied
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return plain_copy(value.item(), where)
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoint extras must be plain data (str, numbers, lists, dicts)"
    )
