"""The teacher pretraining recipe: the dataset's recipe trained reproducibly (``fastlrwa pretrain``, and
``train``'s first-use teacher).

With the default ``torch`` loader the whole training split lives on the device as uint8; each step
gathers a batch by device-side indices, augments it on the device and normalises it on the fly, so
there is no data loader and no host round trip per step. The ``dali`` loader reads, augments and
normalises batches in an NVIDIA DALI pipeline instead (``fastlrwa.data.dali``). Loss is
accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F

from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.config.schema import PretrainConfig
from fastlrwa.data import DatasetInfo, DeviceImageSet, dataset_info, evaluate, load_split, random_crop_flip
from fastlrwa.data.dali import DaliTrainBatches, load_split_with
from fastlrwa.data.dali_sources import dali_source
from fastlrwa.distributed import DistributedContext, rank_seed
from fastlrwa.errors import ConfigError, NonFiniteLossError
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint
from fastlrwa.models.batchnorm import batchnorm_running_stats
from fastlrwa.options import flag_names
from fastlrwa.progress import epoch_progress
from fastlrwa.runtime import amp_dtype, autocast_to, compiled, environment_versions, resolve_device, seed_everything
from fastlrwa.trainer.schedule import cosine_schedule
from fastlrwa.trainer.stop_signals import stop_error, stop_name


class TrainBatches(Protocol):
    """Where the training batches come from: ``epoch()`` yields ``steps_per_epoch`` pairs of
    normalised float32 images ``[B, C, H, W]`` and int64 labels on the training device."""

    steps_per_epoch: int

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class DeviceTrainBatches:
    """The default loader: the split held on the device, shuffled and augmented on the device.

    With several ranks every rank draws the same permutation (``order_rng``, same seed) and
    takes every ``world_size``-th sample of it from its ``rank`` on, cut to a common length so all
    ranks run the same number of steps; augmentation draws from the rank's own ``rng``.
    In one process both are the same random-number generator.
    """

    def __init__(
        self,
        train_set: DeviceImageSet,
        *,
        batch_size: int,
        info: DatasetInfo,
        rng: torch.Generator,
        order_rng: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._shard = len(train_set) // world_size
        self.steps_per_epoch = math.ceil(self._shard / batch_size)
        self._set = train_set
        self._batch_size = batch_size
        self._info = info
        self._rng = rng
        self._order_rng = order_rng or rng
        self._rank = rank
        self._world_size = world_size

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self._set), device=self._set.device, generator=self._order_rng)
        if self._world_size > 1:
            order = order[self._rank :: self._world_size][: self._shard]
        for step in range(self.steps_per_epoch):
            index = order[step * self._batch_size : (step + 1) * self._batch_size]
            raw = self._set.images.index_select(0, index)
            if self._info.augment:
                raw = random_crop_flip(raw, padding=4, flip=self._info.flip, rng=self._rng)
            yield self._set.normalize(raw), self._set.labels.index_select(0, index)


def _train_batches(config: PretrainConfig, context: DistributedContext) -> TrainBatches:
    device = context.device
    if config.loader == "dali":
        if context.is_distributed:
            loader = flag_names(PretrainConfig)["loader"]
            raise ConfigError(f"{loader} dali runs in one process; distributed pretraining uses {loader} torch")
        source = dali_source(config.dataset, "train", root=config.data_root, download=config.download)
        return DaliTrainBatches(source, batch_size=config.batch_size, device=device, seed=config.seed)
    train_split = load_split(config.dataset, "train", root=config.data_root, download=config.download)
    train_set = DeviceImageSet(train_split, device)
    rng = torch.Generator(device=device).manual_seed(rank_seed(config.seed, context.rank))
    order_rng = torch.Generator(device=device).manual_seed(config.seed) if context.is_distributed else None
    return DeviceTrainBatches(
        train_set,
        batch_size=config.batch_size,
        info=dataset_info(config.dataset),
        rng=rng,
        order_rng=order_rng,
        rank=context.rank,
        world_size=context.world_size,
    )


@contextmanager
def _stopped_by_signal(current_epoch: Callable[[], int], epochs: int) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) ends as one line and exit code 130 (143), as in ``train``; a half-trained teacher is
    never written."""
    try:
        yield
    except KeyboardInterrupt as stop:
        raise stop_error(stop)(
            f"stopped by {stop_name(stop)} in epoch {current_epoch()}/{epochs} of teacher pretraining; nothing was "
            "saved (a teacher is written when its training ends); run the same command again to train it"
        ) from None


def pretrain_teacher(config: PretrainConfig, context: DistributedContext | None = None) -> dict | None:
    """Train, evaluate every epoch, write ``OUT/model.pt`` and ``OUT/metrics.json``; returns the metrics.

    ``config`` is validated (``validate_pretrain_config``) and its loader available (``check_loader``).
    ``config.loader`` is ``torch`` (the split held on the device) or ``dali`` (an NVIDIA DALI pipeline).
    Under torchrun pass the ``context``: each rank trains on its shard with DDP, rank 0 evaluates and
    writes the files and returns the metrics (the other ranks return None). Without one, it runs in this
    process alone, whatever the environment (``train`` pretrains its teacher this way on rank 0).
    Ctrl-C stops with ``Interrupted`` (SIGTERM with ``Terminated``) and writes nothing.
    """
    context = context or DistributedContext(0, 1, 0, resolve_device(config.device))
    device = context.device
    autocast = amp_dtype(config.amp, device)
    seed_everything(config.seed)
    info = dataset_info(config.dataset)
    with context.fail_together():
        batches = _train_batches(config, context)
        test_split = (
            load_split_with(
                config.loader, config.dataset, "test", root=config.data_root, download=config.download, device=device
            )
            if context.is_main
            else None
        )
    test_set = DeviceImageSet(test_split, device) if test_split is not None else None

    model = build_model(config.arch, info.num_classes, in_channels=info.channels, image_size=info.image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    context.broadcast_module_state_(model)
    network = context.data_parallel(model)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        foreach=True,
    )
    steps_per_epoch = batches.steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)

    def loss_of(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast_to(device.type, autocast):
            return F.cross_entropy(network(images), labels)

    if config.compile:
        loss_of = compiled(loss_of)

    history: list[dict] = []
    started = time.perf_counter()
    epoch = 0
    with (
        epoch_progress(config.progress and context.is_main, silent=not context.is_main) as progress,
        _stopped_by_signal(lambda: epoch, config.epochs),
    ):
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
            # Each rank's BatchNorm statistics saw only its shard; evaluate and save their mean.
            context.average_(list(batchnorm_running_stats(model).values()))
            train_loss = context.mean_over_ranks({"loss": loss_sum.item() / steps_per_epoch})["loss"]
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"teacher training loss became {train_loss} in epoch {epoch}; lower --lr or disable --amp"
                )
            if not context.is_main:
                continue
            result = evaluate(model, test_set, batch_size=config.eval_batch_size, autocast_dtype=autocast)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "test_accuracy": result.accuracy,
                    "epoch_time_s": time.perf_counter() - epoch_start,
                }
            )
            progress.log(
                f"epoch {epoch}/{config.epochs}  loss {train_loss:.4f}  test acc {result.accuracy:.2f}%  "
                f"({time.perf_counter() - epoch_start:.1f}s)"
            )

    wall = time.perf_counter() - started
    if not context.is_main:
        return None
    out = Path(config.out)
    save_model_checkpoint(
        out / "model.pt",
        model.to(memory_format=torch.contiguous_format),
        ModelMeta.for_dataset(config.arch, info),
        extra={"test_accuracy": result.accuracy, "recipe": asdict(config)},
    )
    metrics = {
        "test_accuracy": result.accuracy,
        "per_class_accuracy": result.per_class,
        "dataset": info.name,
        "arch": config.arch,
        "loader": config.loader,
        "world_size": context.world_size,
        "epochs": config.epochs,
        "wall_time_s": wall,
        "history": history,
        "recipe": asdict(config),
        "versions": environment_versions(device),
    }
    atomic_write_json(out / "metrics.json", metrics)
    progress.log(
        f"teacher {config.arch} on {info.name}: test accuracy {result.accuracy:.2f}% in {wall:.0f}s "
        f"-> {out / 'model.pt'}"
    )
    return metrics
