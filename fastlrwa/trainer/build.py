"""Building every part of a run from its config: models, optimisers, replay, the compiled updates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from fastlrwa.config.input_space import run_input
from fastlrwa.config.methods import MethodSpec, method_spec
from fastlrwa.config.schema import TrainConfig
from fastlrwa.config.validate import validate_on_device
from fastlrwa.data import ArraySplit, DatasetInfo, DeviceImageSet, load_split
from fastlrwa.data.user_test_set import load_test_data
from fastlrwa.distributed import DistributedContext, rank_seed
from fastlrwa.errors import ConfigError
from fastlrwa.models import Generator, ModelMeta, build_generator, build_model, layer_default_init
from fastlrwa.models.batchnorm import tracked_batchnorms
from fastlrwa.models.foreign_teacher import ForeignTeacher
from fastlrwa.options import flag_names
from fastlrwa.replay import VAE, GenerativeReplay, MemoryBankReplay, ReplayRing, ReplayScheme
from fastlrwa.runtime import amp_dtype, generator_dtype
from fastlrwa.trainer.impressions import class_vectors
from fastlrwa.trainer.schedule import constant_schedule, cosine_schedule
from fastlrwa.trainer.teacher import load_frozen_teacher
from fastlrwa.updates.generator_update import GeneratorUpdate
from fastlrwa.updates.impression_batch import ImpressionBatches
from fastlrwa.updates.student_batch import StudentBatch, make_student_batch
from fastlrwa.updates.student_update import StudentUpdate


@dataclass
class RunParts:
    config: TrainConfig
    spec: MethodSpec
    context: DistributedContext
    device: torch.device
    autocast_dtype: torch.dtype | None
    info: DatasetInfo
    teacher: nn.Module
    teacher_meta: ModelMeta
    teacher_path: Path
    student: nn.Module
    generator: nn.Module
    student_optimizer: torch.optim.Optimizer
    student_scheduler: torch.optim.lr_scheduler.LRScheduler
    generator_optimizer: torch.optim.Optimizer
    # One loss scaler per optimiser (fp16 only): the two losses have unrelated scales.
    generator_scaler: torch.amp.GradScaler
    student_scaler: torch.amp.GradScaler
    replay: ReplayScheme | None
    test_set: DeviceImageSet | None  # rank 0 only, and only where the run has test data
    rng: torch.Generator
    # None for ZSKD, whose samples are its impressions (``impressions``, filled in by the trainer) and whose
    # generator is built but never trained or used.
    generator_update: GeneratorUpdate | None
    student_batch: StudentBatch
    student_update: StudentUpdate
    impressions: ImpressionBatches | None = None

    def shared_state_owners(self) -> dict[str, object]:
        """Everything whose ``state_dict`` is the same on every rank and goes into a checkpoint once, by key.

        The replay memory is each rank's own: see :mod:`fastlrwa.trainer.rank_state`.
        """
        return {
            "student": self.student,
            "generator": self.generator,
            "student_optimizer": self.student_optimizer,
            "student_scheduler": self.student_scheduler,
            "generator_optimizer": self.generator_optimizer,
            "generator_scaler": self.generator_scaler,
            "student_scaler": self.student_scaler,
        }


def _student_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: the authors' cosine over the epochs, or a constant rate."""
    if config.student.schedule == "cosine":
        return cosine_schedule(optimizer, config.schedule.epochs)
    return constant_schedule(optimizer)


def _replay(
    config: TrainConfig,
    spec: MethodSpec,
    info: DatasetInfo,
    teacher: nn.Module,
    device: torch.device,
    rng: torch.Generator,
) -> ReplayScheme | None:
    r = config.replay
    if spec.replay == "memory":
        ring = ReplayRing(
            r.slots,
            r.slot_size,
            (info.channels, info.image_size, info.image_size),
            info.num_classes,
            device,
            dtype=torch.get_default_dtype(),
            device_budget_bytes=int(r.device_budget_mb * 2**20),
            rng=rng,
        )
        return MemoryBankReplay(ring, push_every=r.push_every)
    if spec.replay == "generative":
        vae = VAE(channels=info.channels, image_size=info.image_size, latent_dim=r.vae_latent).to(device)
        return GenerativeReplay(
            vae,
            teacher,
            lr=r.vae_lr,
            kl_weight=r.vae_kl_weight,
            logit_weight=r.vae_logit_weight,
            replay_batch=r.replay_batch,
            warmup_steps=r.vae_warmup_steps,
            device=device,
            rng=rng,
        )
    return None


def _check_teacher_serves(spec: MethodSpec, config: TrainConfig, teacher: nn.Module, meta: ModelMeta) -> None:
    """A TorchScript teacher that torch could not convert to an exported program takes no hooks, so it has no
    features and no BatchNorm layers to hook (an exported one may lack the features): the priors that read them
    are refused rather than trained without; ZSKD needs the last linear layer's weights."""
    if spec.generator_objective == "impressions":
        class_vectors(teacher, meta.arch)
    if not isinstance(teacher, ForeignTeacher):
        return
    flags = flag_names(TrainConfig)
    why = f" ({teacher.note})" if teacher.note else ""
    if not teacher.has_features and spec.generator_objective in ("dafl", "js_priors") and config.loss.a != 0:
        raise ConfigError(
            f"the activation prior reads the input of the teacher's last nn.Linear, which this {meta.arch} teacher"
            f"{why} does not expose; pass {flags['loss.a']} 0, or load the teacher from its own class with "
            f"{flags['teacher.factory']}"
        )
    if spec.generator_objective == "dfq" and not teacher.takes_hooks:
        raise ConfigError(
            f"dfq matches the inputs of the teacher's BatchNorm layers, which this {meta.arch} teacher{why} does "
            f"not expose; save it with torch.export.save, or load it from its own class with "
            f"{flags['teacher.factory']}, or use another method"
        )


def _test_split(config: TrainConfig, info: DatasetInfo) -> ArraySplit | None:
    """The user's own test set (``--test-data``) where one is given, else the dataset's test split; None with
    neither (the run then measures the student on held-out generated samples only: ``trainer.heldout``)."""
    if config.data.test_data is not None:
        return load_test_data(config.data.test_data, info)
    if config.data.dataset is None:
        return None
    return load_split(info.name, "test", root=config.data.data_root, download=config.data.download)


def build_run(config: TrainConfig, teacher_path: Path, context: DistributedContext) -> RunParts:
    """Every part of the run on ``context.device``; ``teacher_path`` from
    :func:`fastlrwa.commands.teacher.resolve_teacher_path`.

    In a distributed run every rank builds the same models from the same seed, and rank 0's weights
    are then broadcast to be safe; each rank's own random stream is seeded with
    :func:`~fastlrwa.distributed.rank_seed`. Only rank 0 holds the test set (it alone evaluates).
    """
    device = context.device
    with context.fail_together():
        spec = method_spec(config.method)
        autocast = amp_dtype(config.runtime.amp, device)
        validate_on_device(config, str(device), flag_names(TrainConfig))
        info = run_input(config.data, config.teacher)
        teacher, teacher_meta = load_frozen_teacher(teacher_path, config.teacher, info, device)
        _check_teacher_serves(spec, config, teacher, teacher_meta)
        if spec.generator_objective == "dfq" and next(tracked_batchnorms(teacher), None) is None:
            raise ConfigError(
                f"dfq matches the teacher's BatchNorm statistics, but the {teacher_meta.arch} teacher "
                "has no BatchNorm layer; use a teacher with BatchNorm (e.g. resnet34, wrn40_2) or "
                "another method"
            )
        split = _test_split(config, info) if context.is_main else None
        test_set = DeviceImageSet(split, device) if split is not None else None
        student = build_model(
            config.student.arch, info.num_classes, in_channels=info.channels, image_size=info.image_size
        )
        if config.student.init == "layer_default":
            layer_default_init(student)
        student = student.to(device)
        generator = run_generator(config, info).to(device)
    # The generator, the teacher and the student convolve generated images channels_last on every device: oneDNN
    # (CPU) and cuDNN both run their convolutions fastest in it. On the CPU the student's own update runs as fast
    # either way, but the generator step's backward through a contiguous-format student took 10 % longer (a
    # digits iteration 91 against 86 ms on a 2-core Xeon, BENCHMARKS.md): its input images are channels_last.
    generator = generator.to(memory_format=torch.channels_last)
    generator.compute_dtype = generator_dtype(config.runtime.amp, device)
    teacher = teacher.to(memory_format=torch.channels_last)
    student = student.to(memory_format=torch.channels_last)
    student.train()
    generator.train()
    context.broadcast_module_state_(student)

    student_optimizer = _student_optimizer(config, student)
    generator_optimizer = torch.optim.Adam(
        generator.parameters(),
        lr=config.generator.lr,
        betas=(config.generator.beta1, config.generator.beta2),
        fused=device.type == "cuda",
        foreach=None if device.type == "cuda" else True,
    )
    generator_scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)
    student_scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)
    rng = torch.Generator(device=device).manual_seed(rank_seed(config.runtime.seed, context.rank))
    replay = _replay(config, spec, info, teacher, device, rng)

    # The generator step is plain autograd: DDP averages its gradients during the backward (and
    # broadcasts rank 0's generator once); the student step's torch.func gradients are averaged explicitly.
    generator_update = (
        None
        if spec.generator_objective == "impressions"
        else GeneratorUpdate(
            context.data_parallel(generator),
            teacher,
            student,
            objective=spec.generator_objective,
            weights=config.loss,
            optimizer=generator_optimizer,
            autocast_dtype=autocast,
            scaler=generator_scaler,
            compile=config.runtime.compile,
            grad_norm_every=config.diagnostics.grad_norm_every,
        )
    )
    compile, cuda_graphs = config.runtime.compile, config.runtime.compile_mode == "reduce-overhead"
    student_batch = make_student_batch(
        generator,
        teacher,
        autocast_dtype=autocast,
        compile=compile,
        cuda_graphs=cuda_graphs,
        augment=config.augment,
        rng=rng,
    )
    student_update = StudentUpdate(
        student,
        spec.student_update,
        student_optimizer,
        lrwa=config.lrwa,
        joint=config.joint,
        kd=config.kd,
        autocast_dtype=autocast,
        scaler=student_scaler,
        compile=compile,
        cuda_graphs=cuda_graphs,
        average_grads=context.average_ if context.is_distributed else None,
    )
    return RunParts(
        config=config,
        spec=spec,
        context=context,
        device=device,
        autocast_dtype=autocast,
        info=info,
        teacher=teacher,
        teacher_meta=teacher_meta,
        teacher_path=teacher_path,
        student=student,
        generator=generator,
        student_optimizer=student_optimizer,
        student_scheduler=_student_scheduler(config, student_optimizer),
        generator_optimizer=generator_optimizer,
        generator_scaler=generator_scaler,
        student_scaler=student_scaler,
        replay=replay,
        test_set=test_set,
        rng=rng,
        generator_update=generator_update,
        student_batch=student_batch,
        student_update=student_update,
        impressions=_impression_batches(config, spec, info, teacher, device, rng, autocast),
    )


def run_generator(config: TrainConfig, info: DatasetInfo) -> Generator:
    """The run's generator as its config describes it (the trainer and ``fastlrwa samples`` build the same)."""
    return build_generator(
        latent_dim=config.generator.latent_dim,
        channels=info.channels,
        image_size=info.image_size,
        width=config.generator.width,
        pixel_norm=(info.mean, info.std) if config.generator.output == "pixels" else None,
    )


def _student_optimizer(config: TrainConfig, student: nn.Module) -> torch.optim.Optimizer:
    """The authors' fused SGD with momentum, or ZSKD's Adam (weight decay as L2, as torch.optim.Adam applies it)."""
    s = config.student
    if s.optimizer == "adam":
        return torch.optim.Adam(student.parameters(), lr=s.lr, weight_decay=s.weight_decay, foreach=True)
    return torch.optim.SGD(student.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, fused=True)


def _impression_batches(
    config: TrainConfig,
    spec: MethodSpec,
    info: DatasetInfo,
    teacher: nn.Module,
    device: torch.device,
    rng: torch.Generator,
    autocast: torch.dtype | None,
) -> ImpressionBatches | None:
    if spec.generator_objective != "impressions":
        return None
    shape = (1, info.channels, 1, 1)
    return ImpressionBatches(
        teacher,
        torch.tensor(info.mean, device=device).view(shape),
        torch.tensor(info.std, device=device).view(shape),
        batch_size=config.schedule.batch_size,
        shift=config.impressions.shift,
        flip=config.impressions.flip,
        rng=rng,
        autocast_dtype=autocast,
    )
