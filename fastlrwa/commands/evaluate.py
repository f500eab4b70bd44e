"""``fastlrwa evaluate``: test accuracy and per-class accuracy of a model file."""

from __future__ import annotations

import json

import click

from fastlrwa.data import DeviceImageSet, dataset_info, evaluate
from fastlrwa.data.dali import load_split_with
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.models import check_num_classes, load_checkpoint_with_meta
from fastlrwa.runtime import resolve_device


def run_evaluate(
    checkpoint: str,
    dataset: str | None = None,
    *,
    arch: str | None = None,
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    as_json: bool = False,
    trust_pickle: bool = False,
    loader: str = "torch",
    cross_dataset: bool = False,
) -> dict:
    """Accuracy of ``checkpoint`` on the test split of ``dataset``, printed and returned as a dict.

    ``dataset`` defaults to the one the checkpoint records; another one is refused unless ``cross_dataset``
    (with matching shapes the numbers would look plausible and mean nothing). ``loader`` reads the test
    split with ``torch`` (``load_split``) or ``dali`` (``load_split_dali``).
    """
    model, meta = load_checkpoint_with_meta(checkpoint, arch=arch, trust_pickle=trust_pickle)
    if dataset is None:
        if meta.dataset is None:
            raise ConfigError(f"{checkpoint} does not record the dataset it was trained on; pass --dataset")
        dataset = meta.dataset
    elif meta.dataset is not None and meta.dataset != dataset and not cross_dataset:
        raise CheckpointError(
            f"{checkpoint} was trained on {meta.dataset}, not {dataset}; drop --dataset to evaluate it on "
            f"{meta.dataset}, or pass --cross-dataset to evaluate it on {dataset} anyway"
        )
    info = dataset_info(dataset)
    check_num_classes(meta, info.num_classes, dataset, checkpoint)
    if meta.in_channels != info.channels:
        raise CheckpointError(
            f"{checkpoint}: the model takes {meta.in_channels}-channel images but {dataset} has {info.channels}; "
            "evaluate it on the dataset it was trained for"
        )
    target = resolve_device(device)
    test_set = DeviceImageSet(load_split_with(loader, dataset, "test", root=data_root, device=target), target)
    result = evaluate(model.to(target), test_set, batch_size=batch_size)
    class_names = test_set.info.class_names
    summary = {
        "checkpoint": str(checkpoint),
        "arch": meta.arch,
        "dataset": info.name,
        "test_accuracy": result.accuracy,
        "correct": result.correct,
        "total": result.total,
        "per_class_accuracy": dict(zip(class_names, result.per_class)),
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{meta.arch} on {info.name} test: {result.accuracy:.2f}% ({result.correct}/{result.total})")
        width = max(len(name) for name in class_names)
        for name, accuracy in zip(class_names, result.per_class):
            click.echo(f"  {name:<{width}}  {accuracy:6.2f}%")
    return summary
