"""The typed configuration of a distillation run and of teacher pretraining.

One frozen dataclass per concern; ``TrainConfig`` composes them, the options of each update and loss
among them (``LRWAOptions``, ``JointOptions``, ``GeneratorLossOptions``, kept next to their code). A field
with a fixed set of values is a ``Literal``, checked when the dataclass is built (``fastlrwa.options``).
Presets (``presets.py``) are plain nested dicts of overrides applied to these defaults, and CLI flags
are dotted-path overrides on top (``schedule.epochs=4``), so every value a run used is visible in
``config.json``. Torch-free.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from fastlrwa.errors import ConfigError
from fastlrwa.losses.options import GeneratorLossOptions
from fastlrwa.options import OptionError, Options, field_types
from fastlrwa.updates.options import JointOptions, LRWAOptions

# auto: the generator in bf16 on a CPU that computes bf16 natively, float32 everywhere else (runtime.generator_dtype)
AmpMode = Literal["auto", "none", "bf16", "fp16"]


@dataclass(frozen=True)
class DataConfig(Options):
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    # A labelled test set of the user's own in place of the dataset's test split: an ImageFolder tree or an .npz
    # of arrays x and y (``fastlrwa.data.user_test_set``).
    test_data: str | None = None


@dataclass(frozen=True)
class TeacherConfig(Options):
    # None: the cached teacher for the dataset, pretrained on first use where a pretrain preset exists.
    path: str | None = None
    arch: str | None = None
    trust_pickle: bool = False
    # A teacher whose metadata names another dataset is refused unless this says the user means it.
    cross_dataset: bool = False
    # A teacher of the user's own class: MODULE_OR_FILE.py:CALLABLE building it (its code is imported), the
    # weights a state_dict in ``path``.
    factory: str | None = None
    # The normalisation a teacher from outside fastlrwa was trained with, comma-separated per channel
    # (``config.normalisation``); None: the dataset's.
    mean: str | None = None
    std: str | None = None


@dataclass(frozen=True)
class StudentConfig(Options):
    arch: str = "resnet18"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    # layer_default: every layer's own PyTorch initialisation, as the authors' students keep it | kaiming:
    # Kaiming-normal convolutions and zero Linear biases (fastlrwa's teacher init)
    init: Literal["layer_default", "kaiming"] = "layer_default"


@dataclass(frozen=True)
class GeneratorConfig(Options):
    latent_dim: int = 1000
    width: int = 128  # channels of the first conv (the paper's 128); the second has width/2
    lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass(frozen=True)
class ReplayConfig(Options):
    # Memory bank (MB-DFKD, LRWA-MB)
    slots: int = 10
    slot_size: int = 64
    push_every: int = 5
    device_budget_mb: float = 2048.0
    # Generative replay (PRE-DFKD, LRWA-GR)
    vae_latent: int = 256
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-3
    vae_logit_weight: float = 0.1
    vae_warmup_steps: int = 72
    replay_batch: int = 64


@dataclass(frozen=True)
class ScheduleConfig(Options):
    epochs: int = 200
    iters_per_epoch: int = 72
    gen_steps: int = 1
    student_steps: int = 10
    batch_size: int = 512


@dataclass(frozen=True)
class RuntimeConfig(Options):
    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: AmpMode = "auto"
    compile: bool = False
    # default: Inductor's kernels | reduce-overhead: the student steps and their batches replayed as CUDA graphs
    compile_mode: Literal["default", "reduce-overhead"] = "default"
    eval_batch_size: int = 1024
    progress: bool = True
    # Stop (with a checkpoint) once this many epochs are done, 0 = run all; the schedule still spans
    # schedule.epochs, so a run split with --stop-after and --resume equals an uninterrupted one.
    stop_after: int = 0


@dataclass(frozen=True)
class DiagnosticsConfig(Options):
    """What the trainer measures to show why a run plateaus (README, "Diagnostics"); none of it changes training."""

    # The gradient norm of each weighted generator-loss term (one more backward per term) on every N-th generator
    # step of an epoch; 0: never. 50 keeps it under 2 % of a run at the paper's schedule.
    grad_norm_every: int = 50
    # Generated samples drawn each epoch from fixed latents into a TensorBoard image grid; 0: none.
    sample_grid: int = 64


@dataclass(frozen=True)
class TrainConfig(Options):
    method: str = "lrwa-mb"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    loss: GeneratorLossOptions = field(default_factory=GeneratorLossOptions)
    lrwa: LRWAOptions = field(default_factory=LRWAOptions)
    joint: JointOptions = field(default_factory=JointOptions)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


@dataclass(frozen=True)
class PretrainConfig(Options):
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
    amp: AmpMode = "none"
    compile: bool = False
    eval_batch_size: int = 1024
    progress: bool = True
    loader: Literal["torch", "dali"] = "torch"  # torch (split held on the device) | dali (NVIDIA DALI pipeline)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def field_type(cls: type, path: str) -> Any:
    """The annotation of the field at dotted ``path`` of the config dataclass ``cls`` (``lrwa.hvp``)."""
    head, _, rest = path.partition(".")
    annotation = field_types(cls)[head]
    return field_type(annotation, rest) if rest else annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Bring a value (from JSON or a CLI string) to the type of a dataclass field; a ``Literal`` field's
    value is checked by its options object when built."""
    kinds = _members(annotation)
    if value is None:
        if type(None) in kinds:
            return None
        raise ConfigError(f"{where} may not be empty")
    for kind in kinds:
        try:
            if typing.get_origin(kind) is Literal:
                return value
            if kind is bool:
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                    return value.lower() in {"1", "true", "yes", "on"}
                continue
            if kind is int:
                if isinstance(value, bool):
                    continue
                if isinstance(value, float) and not value.is_integer():
                    continue
                return int(value)
            if kind is float:
                if isinstance(value, bool):
                    continue
                return float(value)
            if kind is str:
                return str(value)
        except (TypeError, ValueError):
            continue
    names = " | ".join("None" if kind is type(None) else getattr(kind, "__name__", str(kind)) for kind in kinds)
    raise ConfigError(f"{where}={value!r} is not a valid {names}")


def apply_overrides(config: Any, overrides: Mapping[str, Any], *, origin: str = "override", _prefix: str = "") -> Any:
    """Return a copy of ``config`` with nested-dict or dotted-path overrides applied and type-checked.

    ``overrides`` may be nested (``{"schedule": {"epochs": 4}}``, the preset form) or flat with dotted
    keys (``{"schedule.epochs": 4}``, the CLI form). Unknown keys, and values outside a field's
    choices, are an error naming the valid ones.
    """
    fields = field_types(type(config))
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        path = f"{_prefix}{head}"
        if head not in fields:
            raise ConfigError(f"unknown {origin} key '{_prefix}{key}'; valid keys here: {', '.join(sorted(fields))}")
        current = changes.get(head, getattr(config, head))
        if dataclasses.is_dataclass(current):
            nested = {rest: value} if rest else value
            if not isinstance(nested, Mapping):
                raise ConfigError(f"{origin} '{path}' must be a mapping of {type(current).__name__} fields")
            changes[head] = apply_overrides(current, nested, origin=origin, _prefix=f"{path}.")
        elif rest:
            raise ConfigError(f"unknown {origin} key '{_prefix}{key}': '{path}' has no sub-keys")
        else:
            changes[head] = _coerce(value, fields[head], f"{origin} {path}")
    try:
        return dataclasses.replace(config, **changes)
    except OptionError as error:
        raise ConfigError(f"{origin} {_prefix}{error}") from None


# Keys of configs written by earlier versions, read under their names of today: (section, key) ->
# (section, key, conversion of the value).
_RENAMED_KEYS: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("replay", "joint_objective"): ("joint", "objective", lambda objective: objective),
    # The probe ran on every LRWA step, or on none.
    ("lrwa", "log_alignment"): ("lrwa", "align_every", lambda on: 1 if on else 0),
}


def upgrade_train_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved train config (``config.json``, a checkpoint) of any fastlrwa version, with the keys renamed
    since under their names of today (nested, as ``to_dict`` writes it)."""
    upgraded = {key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()}
    for (section, key), (new_section, new_key, convert) in _RENAMED_KEYS.items():
        old = upgraded.get(section)
        if isinstance(old, dict) and key in old:
            upgraded.setdefault(new_section, {})[new_key] = convert(old.pop(key))
    return upgraded


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from ``to_dict`` output (e.g. a checkpoint or config.json); a train config
    written by an earlier version is read with its renamed keys upgraded."""
    if cls is TrainConfig:
        data = upgrade_train_config(data)
    return apply_overrides(cls(), data, origin="saved config")
