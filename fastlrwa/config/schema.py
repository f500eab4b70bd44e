"""The typed configuration of a distillation run and of teacher pretraining.

One frozen dataclass per concern; ``TrainConfig`` composes them, the options of each update and loss
among them (``LRWAOptions``, ``JointOptions``, ``StudentAugmentOptions``, ``GeneratorLossOptions``, kept
next to their code). A field with a fixed set of values is a ``Literal``, checked when the dataclass is
built (``fastlrwa.options``).
Presets (``presets.py``) are plain nested dicts of overrides applied to these defaults, and CLI flags
are dotted-path overrides on top (``schedule.epochs=4``), so every value a run used is visible in
``config.json``. Each field's flag, help and run-local mark are declared with it (``fastlrwa.options.option``):
the command line, the sweeps and the resume rules read them from here. Torch-free.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from fastlrwa.config.methods import METHODS
from fastlrwa.data.catalog import DATASET_NAMES
from fastlrwa.errors import ConfigError
from fastlrwa.losses.options import GeneratorLossOptions, ImpressionOptions
from fastlrwa.models.names import CLASSIFIER_NAMES
from fastlrwa.options import OptionError, Options, field_types, option, run_local_keys
from fastlrwa.updates.options import JointOptions, KDOptions, LRWAOptions, StudentAugmentOptions

# auto: the generator in bf16 on a CPU that computes bf16 natively, float32 everywhere else (runtime.generator_dtype)
AmpMode = Literal["auto", "none", "bf16", "fp16"]

# Help texts the commands' own options share with the fields'.
ARCH_CHOICES = f"{', '.join(CLASSIFIER_NAMES)}, or a torchvision classification model name"
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
DATA_ROOT_HELP = (
    "folder holding the datasets (default: $FASTLRWA_DATA, else ~/.cache/fastlrwa/data; digits needs "
    "none, Fashion-MNIST is also found in /usr/share/datasets/fashion-mnist)"
)


def _amp(default: AmpMode) -> Any:
    """The ``amp`` field of a run and of pretraining: ``--amp-dtype`` names the precision, the switches ``--amp``
    (bf16) and ``--no-amp`` (float32) say it shortly (the last given wins, ``--amp-dtype`` over them)."""
    switches = (
        (
            "--amp",
            "bf16",
            "mixed precision: bf16 autocast; by default on CPUs with native bf16 (AVX512-BF16, AMX), float32 "
            "elsewhere; emulated, it slows other CPUs several times (see README); see --amp-dtype",
        ),
        ("--no-amp", "none", "float32 throughout, also where --amp is the default"),
    )
    return option(
        default,
        flag="--amp-dtype",
        switches=switches,
        help="precision by name, over --amp / --no-amp (fp16 uses a GradScaler, CUDA only; auto: the default)",
    )


_NO_PROGRESS = "no live progress bar (one line per epoch instead)"


@dataclass(frozen=True)
class DataConfig(Options):
    # None: no dataset; the teacher's input is described by num_classes, image_size and in_channels
    # (``fastlrwa.config.input_space``).
    dataset: str | None = option(
        "digits",
        flag="--dataset",
        choices=tuple(DATASET_NAMES),
        help="dataset the teacher was trained on (test set used for evaluation); leave it out and give "
        "--num-classes, --image-size and --in-channels for a teacher of no dataset fastlrwa knows",
    )
    num_classes: int | None = option(
        None, flag="--num-classes", help="with no --dataset: the classes your teacher tells apart (its output width)"
    )
    image_size: int | None = option(
        None, flag="--image-size", help="with no --dataset: the height and width of your teacher's square input"
    )
    in_channels: int | None = option(
        None, flag="--in-channels", help="with no --dataset: the channels of your teacher's input (1 grey, 3 colour)"
    )
    data_root: str | None = option(None, flag="--data-root", help=DATA_ROOT_HELP, run_local=True)
    download: bool = option(False, run_local=True)
    # A labelled test set of the user's own in place of the dataset's test split: an ImageFolder tree or an .npz
    # of arrays x and y (``fastlrwa.data.user_test_set``).
    test_data: str | None = option(
        None,
        flag="--test-data",
        help="DIR or FILE.npz: a labelled test set of your own in place of the dataset's: an ImageFolder tree (a "
        "folder of images per class) or numpy arrays x (raw pixels) and y (labels), normalised as the teacher was",
    )


@dataclass(frozen=True)
class TeacherConfig(Options):
    # None: the cached teacher for the dataset, pretrained on first use where a pretrain preset exists.
    path: str | None = option(
        None,
        flag="--teacher",
        help="teacher file: a fastlrwa model file, a state_dict (with --teacher-arch or --teacher-factory), a "
        "TorchScript file (torch.jit.save; converted to a torch.export program where torch can, for the priors that "
        "read its layers) or a torch.export program (torch.export.save), told apart by content "
        "(default: the dataset's cached teacher in ~/.cache/fastlrwa/teachers, or $FASTLRWA_CACHE/teachers, "
        "trained on first use)",
    )
    arch: str | None = option(
        None, flag="--teacher-arch", help=f"teacher architecture, for a bare state_dict: {ARCH_CHOICES}"
    )
    trust_pickle: bool = option(
        False,
        flag="--trust-pickle",
        help="allow a teacher file that is a pickled module (runs its code!)",
        run_local=True,
    )
    # A teacher whose metadata names another dataset is refused unless this says the user means it.
    cross_dataset: bool = option(
        False, flag="--cross-dataset", help="use a teacher whose checkpoint records another dataset than --dataset"
    )
    # A teacher of the user's own class: MODULE_OR_FILE.py:CALLABLE building it (its code is imported), the
    # weights a state_dict in ``path``.
    factory: str | None = option(
        None,
        flag="--teacher-factory",
        help="MODULE_OR_FILE.py:CALLABLE building your own nn.Module, whose state_dict --teacher holds (weights "
        "only); this imports and runs your code: pass it only for code you trust",
    )
    # The normalisation a teacher from outside fastlrwa was trained with, comma-separated per channel
    # (``config.normalisation``); None: the dataset's.
    mean: str | None = option(
        None,
        flag="--teacher-mean",
        help="M[,M,...]: the per-channel mean a teacher from outside fastlrwa was trained with, as torchvision's "
        "Normalize on pixels in [0, 1] (default: the dataset's)",
    )
    std: str | None = option(None, flag="--teacher-std", help="S[,S,...]: its per-channel std, as for --teacher-mean")


@dataclass(frozen=True)
class StudentConfig(Options):
    arch: str = option("resnet18", flag="--student", help=f"student architecture: {ARCH_CHOICES}")
    # sgd: the authors' (with momentum and weight decay) | adam: ZSKD's transfer (weight decay applied as L2, betas
    # 0.9 / 0.999, no momentum flag)
    optimizer: Literal["sgd", "adam"] = option(
        "sgd", flag="--student-optimizer", help="student optimiser: SGD with momentum (the authors') or Adam (ZSKD's)"
    )
    lr: float = option(0.1, flag="--lr-student", help="student learning rate")
    momentum: float = option(0.9, flag="--momentum", help="student SGD momentum")
    weight_decay: float = option(5e-4, flag="--weight-decay", help="student weight decay")
    schedule: Literal["cosine", "constant"] = option(
        "cosine", flag="--lr-schedule", help="student learning-rate schedule"
    )
    # layer_default: every layer's own PyTorch initialisation, as the authors' students keep it | kaiming:
    # Kaiming-normal convolutions and zero Linear biases (fastlrwa's teacher init)
    init: Literal["layer_default", "kaiming"] = option(
        "layer_default",
        flag="--student-init",
        help="student initialisation: each layer's PyTorch default (the authors') or Kaiming-normal",
    )


@dataclass(frozen=True)
class GeneratorConfig(Options):
    latent_dim: int = option(1000, flag="--latent-dim", help="generator latent size")
    # channels of the first conv (the paper's 128); the second has width/2
    width: int = option(128, flag="--generator-width", help="channels of the generator's first conv (paper: 128)")
    lr: float = option(0.02, flag="--lr-generator", help="generator Adam learning rate")
    beta1: float = 0.9
    beta2: float = 0.999
    # standardised: tanh then a BatchNorm without affine, the authors' (each batch standardised, so its values can
    # reach far outside what a real image takes) | pixels: tanh read as pixels in [0, 1], in the dataset's
    # normalisation, so every generated value is one a real image can have
    output: Literal["standardised", "pixels"] = option(
        "standardised",
        flag="--generator-output",
        help="generator's last layer: standardised per batch (the authors') or pixels in [0, 1] (the real range)",
    )


@dataclass(frozen=True)
class ReplayConfig(Options):
    # Memory bank (MB-DFKD, LRWA-MB)
    slots: int = option(10, flag="--memory-slots", help="memory-bank capacity in slots")
    slot_size: int = option(64, flag="--memory-slot-size", help="samples per memory slot")
    push_every: int = option(5, flag="--memory-push-every", help="push to the memory bank every N epochs")
    device_budget_mb: float = option(
        2048.0, flag="--memory-budget-mb", help="device memory for the bank; beyond it a pinned host tier"
    )
    # Generative replay (PRE-DFKD, LRWA-GR)
    vae_latent: int = option(256, flag="--vae-latent", help="generative replay: VAE latent size")
    vae_lr: float = option(1e-3, flag="--vae-lr", help="generative replay: VAE learning rate")
    vae_kl_weight: float = option(1e-3, flag="--vae-kl-weight", help="generative replay: KL weight")
    vae_logit_weight: float = option(
        0.1, flag="--vae-logit-weight", help="generative replay: teacher-logit reconstruction weight"
    )
    vae_warmup_steps: int = 72
    replay_batch: int = option(64, flag="--replay-batch", help="generative replay: samples per replay batch")


@dataclass(frozen=True)
class ScheduleConfig(Options):
    epochs: int = option(200, flag="--epochs", help="epochs E")
    iters_per_epoch: int = option(72, flag="--iters-per-epoch", help="iterations per epoch I")
    gen_steps: int = option(1, flag="--gen-steps", help="generator steps per iteration g")
    student_steps: int = option(10, flag="--student-steps", help="student steps per iteration s")
    batch_size: int = option(512, flag="--batch-size", help="generated batch size")


@dataclass(frozen=True)
class RuntimeConfig(Options):
    out: str = option(
        "runs/default",
        flag="--out",
        help="run directory for config, metrics, checkpoints and TensorBoard (default: runs/PRESET, or the first "
        "free runs/PRESET-2, -3, ... when that holds a run)",
        run_local=True,
        sweep="--root",
    )
    seed: int = option(0, flag="--seed", help="random seed", sweep="--seeds")
    device: str = option("auto", flag="--device", help=DEVICE_HELP, run_local=True, sweep="--device")
    amp: AmpMode = _amp("auto")
    compile: bool = option(
        False,
        flag="--compile/--no-compile",
        help="compile the student and generator updates with torch.compile (pays on GPUs and for large models, "
        "not on the CPU presets: see README)",
        run_local=True,
    )
    # default: Inductor's kernels | reduce-overhead: the student steps and their batches replayed as CUDA graphs
    compile_mode: Literal["default", "reduce-overhead"] = option(
        "default",
        flag="--compile-mode",
        help="with --compile: default, or reduce-overhead to replay the student steps and their batches as CUDA "
        "graphs (CUDA only; pays where kernel launches dominate, e.g. the small presets on a GPU)",
        run_local=True,
    )
    eval_batch_size: int = option(1024, flag="--eval-batch-size", help="test-set evaluation batch size", run_local=True)
    progress: bool = option(
        True, flag="--no-progress", help=_NO_PROGRESS, run_local=True, sweep="(runs always log to train.log)"
    )
    # Stop (with a checkpoint) once this many epochs are done, 0 = run all; the schedule still spans
    # schedule.epochs, so a run split with --stop-after and --resume equals an uninterrupted one.
    stop_after: int = option(
        0,
        flag="--stop-after",
        help="stop after this many epochs with a checkpoint (the schedule still spans --epochs); continue with "
        "--resume",
        run_local=True,
    )


@dataclass(frozen=True)
class DiagnosticsConfig(Options):
    """What the trainer measures to show why a run plateaus (README, "Diagnostics"); none of it changes training."""

    # The gradient norm of each weighted generator-loss term (one more backward per term) on every N-th generator
    # step of an epoch; 0: never. 50 keeps it under 2 % of a run at the paper's schedule.
    grad_norm_every: int = option(
        50,
        flag="--grad-norm-every",
        help="log the gradient norm of each generator-loss term (one more backward per term) on every N-th "
        "generator step of an epoch; 0: never",
        run_local=True,
    )
    # Generated samples drawn each epoch from fixed latents into a TensorBoard image grid; 0: none.
    sample_grid: int = option(
        64,
        flag="--sample-grid",
        help="generated samples (from fixed latents) drawn into a TensorBoard image each epoch; 0: none",
        run_local=True,
    )


@dataclass(frozen=True)
class TrainConfig(Options):
    method: str = option(
        "lrwa-mb",
        flag="--method",
        choices=tuple(METHODS),
        help="distillation method (lrwa-mb = paper's Ours-1, lrwa-gr = Ours-2)",
        sweep="--methods",
    )
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    loss: GeneratorLossOptions = field(default_factory=GeneratorLossOptions)
    lrwa: LRWAOptions = field(default_factory=LRWAOptions)
    joint: JointOptions = field(default_factory=JointOptions)
    augment: StudentAugmentOptions = field(default_factory=StudentAugmentOptions)
    kd: KDOptions = field(default_factory=KDOptions)
    impressions: ImpressionOptions = field(default_factory=ImpressionOptions)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


# Keys that change how a run is executed, not what it computes (``Flag.run_local``).
RUN_LOCAL_KEYS = run_local_keys(TrainConfig)


@dataclass(frozen=True)
class PretrainConfig(Options):
    dataset: str = "digits"
    arch: str = option("lenet5", flag="--arch", help=f"teacher architecture: {ARCH_CHOICES}")
    out: str = option("teachers/digits-lenet5", flag="--out", help="output folder for model.pt and metrics.json")
    epochs: int = option(30, flag="--epochs", help="training epochs")
    batch_size: int = option(64, flag="--batch-size", help="batch size (per process under torchrun)")
    lr: float = option(0.05, flag="--lr", help="peak learning rate of SGD with Nesterov momentum 0.9, cosine schedule")
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    data_root: str | None = option(None, flag="--data-root", help=DATA_ROOT_HELP)
    download: bool = option(False, flag="--download", help="let torchvision download the dataset (needs internet)")
    seed: int = option(0, flag="--seed", help="random seed")
    device: str = option("auto", flag="--device", help=DEVICE_HELP)
    amp: AmpMode = _amp("none")
    compile: bool = option(False, flag="--compile/--no-compile", help="compile the training step with torch.compile")
    eval_batch_size: int = 1024
    progress: bool = option(True, flag="--no-progress", help=_NO_PROGRESS)
    # torch (split held on the device) | dali (NVIDIA DALI pipeline)
    loader: Literal["torch", "dali"] = option(
        "torch",
        flag="--loader",
        help="torch: the split held on the device; dali: an NVIDIA DALI pipeline (pip install 'fastlrwa[dali]')",
    )


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
