"""``fastlrwa pretrain``: train a teacher reproducibly with the dataset's recipe.

With the default ``torch`` loader the whole training split lives on the device as uint8; each step
gathers a batch by device-side indices, augments it on the device and normalises it on the fly, so
there is no data loader and no host round trip per step. The ``dali`` loader reads, augments and
normalises batches in an NVIDIA DALI pipeline instead (``fastlrwa.data.dali``). Loss is
accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.config.schema import PretrainConfig
from fastlrwa.config.validate import validate_pretrain_config
from fastlrwa.errors import NonFiniteLossError
from fastlrwa.data import DeviceImageSet, DatasetInfo, dataset_info, evaluate, load_split, random_crop_flip
from fastlrwa.data.dali import DaliTrainBatches, check_loader, load_split_with
from fastlrwa.data.dali_sources import dali_source
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint
from fastlrwa.progress import epoch_progress
from fastlrwa.runtime import amp_dtype, configure_compile_cache, environment_versions, resolve_device, seed_everything


class TrainBatches(Protocol):
    """Where the training batches come from: ``epoch()`` yields ``steps_per_epoch`` pairs of
    normalised float32 images ``[B, C, H, W]`` and int64 labels on the training device."""

    steps_per_epoch: int

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class DeviceTrainBatches:
    """The default loader: the split held on the device, shuffled and augmented with ``generator``."""

    def __init__(self, train_set: DeviceImageSet, *, batch_size: int, info: DatasetInfo,
                 generator: torch.Generator) -> None:
        self.steps_per_epoch = math.ceil(len(train_set) / batch_size)
        self._set = train_set
        self._batch_size = batch_size
        self._info = info
        self._generator = generator

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self._set), device=self._set.device, generator=self._generator)
        for step in range(self.steps_per_epoch):
            index = order[step * self._batch_size:(step + 1) * self._batch_size]
            raw = self._set.images.index_select(0, index)
            if self._info.augment:
                raw = random_crop_flip(raw, padding=4, flip=self._info.flip, generator=self._generator)
            yield self._set.normalize(raw), self._set.labels.index_select(0, index)


def _train_batches(config: PretrainConfig, device: torch.device) -> TrainBatches:
    if config.loader == "dali":
        source = dali_source(config.dataset, "train", root=config.data_root, download=config.download)
        return DaliTrainBatches(source, batch_size=config.batch_size, device=device, seed=config.seed)
    train_split = load_split(config.dataset, "train", root=config.data_root, download=config.download)
    train_set = DeviceImageSet(train_split, device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return DeviceTrainBatches(train_set, batch_size=config.batch_size, info=dataset_info(config.dataset),
                              generator=generator)


def run_pretrain(config: PretrainConfig) -> dict:
    """Train, evaluate every epoch, write ``OUT/model.pt`` and ``OUT/metrics.json``; returns the metrics.

    ``config.loader`` is ``torch`` (the split held on the device) or ``dali`` (an NVIDIA DALI pipeline).
    """
    validate_pretrain_config(config)
    check_loader(config.loader)
    device = resolve_device(config.device)
    autocast = amp_dtype(config.amp, device)
    seed_everything(config.seed)
    info = dataset_info(config.dataset)
    batches = _train_batches(config, device)
    test_set = DeviceImageSet(
        load_split_with(config.loader, config.dataset, "test", root=config.data_root, download=config.download, device=device),
        device,
    )

    model = build_model(config.arch, info.num_classes, in_channels=info.channels, image_size=info.image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        nesterov=config.nesterov, foreach=True,
    )
    steps_per_epoch = batches.steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)

    def loss_of(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            return F.cross_entropy(model(images), labels)

    if config.compile:
        configure_compile_cache()
        loss_of = torch.compile(loss_of)

    history: list[dict] = []
    started = time.perf_counter()
    with epoch_progress(config.progress) as progress:
        for epoch in range(1, config.epochs + 1):
            model.train()
            loss_sum = torch.zeros((), device=device)
            progress.start_epoch(epoch, config.epochs, steps_per_epoch)
            epoch_start = time.perf_counter()
            for images, labels in batches.epoch():
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                loss = loss_of(images, labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach().float()
                progress.advance()
            result = evaluate(model, test_set, batch_size=config.eval_batch_size, autocast_dtype=autocast)
            train_loss = loss_sum.item() / steps_per_epoch
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"teacher training loss became {train_loss} in epoch {epoch}; lower --lr or disable --amp"
                )
            history.append({"epoch": epoch, "train_loss": train_loss, "test_accuracy": result.accuracy,
                            "epoch_time_s": time.perf_counter() - epoch_start})
            progress.log(
                f"epoch {epoch}/{config.epochs}  loss {train_loss:.4f}  test acc {result.accuracy:.2f}%  "
                f"({time.perf_counter() - epoch_start:.1f}s)"
            )

    wall = time.perf_counter() - started
    out = Path(config.out)
    meta = ModelMeta(
        arch=config.arch, num_classes=info.num_classes, in_channels=info.channels, image_size=info.image_size,
        dataset=info.name, mean=tuple(info.mean), std=tuple(info.std),
    )
    save_model_checkpoint(out / "model.pt", model.to(memory_format=torch.contiguous_format),
                          meta, extra={"test_accuracy": result.accuracy, "recipe": asdict(config)})
    metrics = {
        "test_accuracy": result.accuracy,
        "per_class_accuracy": result.per_class,
        "dataset": info.name,
        "arch": config.arch,
        "loader": config.loader,
        "epochs": config.epochs,
        "wall_time_s": wall,
        "history": history,
        "recipe": asdict(config),
        "versions": environment_versions(device),
    }
    atomic_write_json(out / "metrics.json", metrics)
    progress.log(f"teacher {config.arch} on {info.name}: test accuracy {result.accuracy:.2f}% in {wall:.0f}s -> {out / 'model.pt'}")
    return metrics
