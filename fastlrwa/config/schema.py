"""The typed configuration of a distillation run and of teacher pretraining.

One dataclass per concern; ``TrainConfig`` composes them. Presets (``presets.py``) are plain nested
dicts of overrides applied to these defaults, and CLI flags are dotted-path overrides on top
(``schedule.epochs=4``), so every value a run used is visible in ``config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from fastlrwa.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False


@dataclass
class TeacherConfig:
    # None: the cached teacher for the dataset, pretrained on first use where a pretrain preset exists.
    path: str | None = None
    arch: str | None = None
    trust_pickle: bool = False
    # A teacher whose metadata names another dataset is refused unless this says the user means it.
    cross_dataset: bool = False


@dataclass
class StudentConfig:
    arch: str = "resnet18"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | constant
    # layer_default: every layer's own PyTorch initialisation, as the authors' students keep it | kaiming:
    # Kaiming-normal convolutions and zero Linear biases (fastlrwa's teacher init)
    init: str = "layer_default"


@dataclass
class GeneratorConfig:
    latent_dim: int = 1000
    width: int = 128  # channels of the first conv (the paper's 128); the second has width/2
    lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass
class LossConfig:
    """Weights and variants of the generator objective (paper eq. 9-15, DAFL, DFAD, DFQ)."""

    js_variant: str = "official"  # official (authors' code) | paper (eq. 10)
    js_temperature: float = 3.0
    adv: float = 1.0  # weight of the adversarial (disagreement) term
    oh: float = 1.0  # one-hot loss L_OH
    a: float = 0.1  # activation loss L_A (gamma)
    ie: float = 5.0  # batch-entropy loss L_EM (delta)
    entropy_log_base: float = 10.0  # authors' code uses log10; 2.718281828459045 for the paper's natural log
    bn: float = 1.0  # DFQ: BatchNorm-statistics matching


@dataclass
class LRWAConfig:
    """The meta update of eq. 6: inner SGD step of size alpha with weight decay."""

    alpha: float = 0.9
    weight_decay: float = 5e-4
    # official: eq. 6 with the authors' outer loss on cat(new, memory) | paper: eq. 6 as written | released: what
    # the authors' released code computes (higher's copy_initial_weights=True drops the meta-gradient): the joint
    # MB-DFKD step on cat(new, memory), i.e. mb-dfkd with replay.joint_objective=official
    objective: str = "official"
    hvp: str = "exact"  # exact | fd | first_order
    # How the exact Hessian-vector product is taken: forward (forward-over-reverse, less memory) | reverse
    # | auto: forward, except compiled on CUDA, where the Triton MAE has no forward-mode rule under Dynamo.
    exact_method: str = "auto"
    log_alignment: bool = True


@dataclass
class ReplayConfig:
    # Memory bank (MB-DFKD, LRWA-MB)
    slots: int = 10
    slot_size: int = 64
    push_every: int = 5
    device_budget_mb: float = 2048.0
    # joint update of the replay baselines: official = one forward on cat(new, memory); paper = sum of two losses
    joint_objective: str = "official"
    # Generative replay (PRE-DFKD, LRWA-GR)
    vae_latent: int = 256
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-3
    vae_logit_weight: float = 0.1
    vae_warmup_steps: int = 72
    replay_batch: int = 64


@dataclass
class ScheduleConfig:
    epochs: int = 200
    iters_per_epoch: int = 72
    gen_steps: int = 1
    student_steps: int = 10
    batch_size: int = 512


@dataclass
class RuntimeConfig:
    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16
    compile: bool = False
    eval_batch_size: int = 1024
    progress: bool = True
    # Stop (with a checkpoint) once this many epochs are done, 0 = run all; the schedule still spans
    # schedule.epochs, so a run split with --stop-after and --resume equals an uninterrupted one.
    stop_after: int = 0


@dataclass
class TrainConfig:
    method: str = "lrwa-mb"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lrwa: LRWAConfig = field(default_factory=LRWAConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class PretrainConfig:
    dataset: str = "digits"
    arch: str = "lenet5"
    out: str = "teachers/digits-lenet5"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    data_root: str | None = None
    download: bool = False
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    compile: bool = False
    eval_batch_size: int = 1024
    progress: bool = True
    loader: str = "torch"  # torch (split held on the device) | dali (NVIDIA DALI pipeline)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: str, where: str) -> Any:
    """Bring a value (from JSON or a CLI string) to the type named by a dataclass field annotation."""
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{where} may not be empty")
    for kind in kinds:
        try:
            if kind == "bool":
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                    return value.lower() in {"1", "true", "yes", "on"}
                continue
            if kind == "int":
                if isinstance(value, bool):
                    continue
                if isinstance(value, float) and not value.is_integer():
                    continue
                return int(value)
            if kind == "float":
                if isinstance(value, bool):
                    continue
                return float(value)
            if kind == "str":
                return str(value)
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{where}={value!r} is not a valid {annotation}")


def apply_overrides(config: Any, overrides: Mapping[str, Any], *, origin: str = "override", _prefix: str = "") -> Any:
    """Return a copy of ``config`` with nested-dict or dotted-path overrides applied and type-checked.

    ``overrides`` may be nested (``{"schedule": {"epochs": 4}}``, the preset form) or flat with dotted
    keys (``{"schedule.epochs": 4}``, the CLI form). Unknown keys are an error naming the valid ones.
    """
    config = dataclasses.replace(config)
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        path = f"{_prefix}{head}"
        if head not in fields:
            raise ConfigError(
                f"unknown {origin} key '{_prefix}{key}'; valid keys here: {', '.join(sorted(fields))}"
            )
        current = getattr(config, head)
        if dataclasses.is_dataclass(current):
            nested = {rest: value} if rest else value
            if not isinstance(nested, Mapping):
                raise ConfigError(f"{origin} '{path}' must be a mapping of {type(current).__name__} fields")
            setattr(config, head, apply_overrides(current, nested, origin=origin, _prefix=f"{path}."))
        elif rest:
            raise ConfigError(f"unknown {origin} key '{_prefix}{key}': '{path}' has no sub-keys")
        else:
            setattr(config, head, _coerce(value, str(fields[head].type), f"{origin} {path}"))
    return config


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from ``to_dict`` output (e.g. a checkpoint or config.json)."""
    return apply_overrides(cls(), data, origin="saved config")
