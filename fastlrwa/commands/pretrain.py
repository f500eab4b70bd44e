"""``fastlrwa pretrain``: train a teacher reproducibly with the dataset's recipe.

The whole training split lives on the device as uint8; each step gathers a batch by device-side
indices, augments it on the device and normalises it on the fly, so there is no data loader and
no host round trip per step. Loss is accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.config.schema import PretrainConfig
from fastlrwa.config.validate import validate_pretrain_config
from fastlrwa.errors import NonFiniteLossError
from fastlrwa.data import DeviceImageSet, dataset_info, evaluate, load_split, random_crop_flip
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint
from fastlrwa.progress import epoch_progress
from fastlrwa.runtime import amp_dtype, configure_compile_cache, environment_versions, resolve_device, seed_everything


def run_pretrain(config: PretrainConfig) -> dict:
    """Train, evaluate every epoch, write ``OUT/model.pt`` and ``OUT/metrics.json``; returns the metrics."""
    validate_pretrain_config(config)
    device = resolve_device(config.device)
    autocast = amp_dtype(config.amp, device)
    seed_everything(config.seed)
    info = dataset_info(config.dataset)
    train_set = DeviceImageSet(load_split(config.dataset, "train", root=config.data_root, download=config.download), device)
    test_set = DeviceImageSet(load_split(config.dataset, "test", root=config.data_root, download=config.download), device)

    model = build_model(config.arch, info.num_classes, in_channels=info.channels, image_size=info.image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        nesterov=config.nesterov, foreach=True,
    )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
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

    generator = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict] = []
    started = time.perf_counter()
    with epoch_progress(config.progress) as progress:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(train_set), device=device, generator=generator)
            loss_sum = torch.zeros((), device=device)
            progress.start_epoch(epoch, config.epochs, steps_per_epoch)
            epoch_start = time.perf_counter()
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                raw = train_set.images.index_select(0, index)
                if info.augment:
                    raw = random_crop_flip(raw, padding=4, flip=info.flip, generator=generator)
                images = train_set.normalize(raw)
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                loss = loss_of(images, train_set.labels.index_select(0, index))
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
        "epochs": config.epochs,
        "wall_time_s": wall,
        "history": history,
        "recipe": asdict(config),
        "versions": environment_versions(device),
    }
    atomic_write_json(out / "metrics.json", metrics)
    progress.log(f"teacher {config.arch} on {info.name}: test accuracy {result.accuracy:.2f}% in {wall:.0f}s -> {out / 'model.pt'}")
    return metrics
