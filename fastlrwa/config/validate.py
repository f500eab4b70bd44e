"""Checks on a resolved config, so that a bad value fails before any work with a line naming it.

The choices of every ``Literal`` field are checked when the config is built (``fastlrwa.options``);
what is left here are ranges and settings that must agree with each other.

A message names a setting the way the user set it: ``flags`` maps config keys to the command's flags
(``schedule.epochs`` -> ``--epochs``); a key without a flag (a preset's value) is named as the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastlrwa.config.input_space import INPUT_KEYS, SIZE_STEP, SMALLEST_SIZE, input_value, run_input
from fastlrwa.config.methods import method_spec
from fastlrwa.config.schema import PretrainConfig, TrainConfig
from fastlrwa.errors import ConfigError


def setting(key: str, value: Any, flags: Mapping[str, str] | None) -> str:
    """``--epochs 0`` where ``key`` has a flag, else ``schedule.epochs=0``."""
    flag = (flags or {}).get(key)
    return f"{flag} {value}" if flag else f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"


def _positive(key: str, value: float, flags: Mapping[str, str] | None, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{setting(key, value, flags)}: must be {'>= 0' if allow_zero else '> 0'}")


def validate_train_config(config: TrainConfig, flags: Mapping[str, str] | None = None) -> None:
    spec = method_spec(config.method)
    _validate_input_space(config, flags)
    s = config.schedule
    for name in ("epochs", "iters_per_epoch", "batch_size", "student_steps"):
        _positive(f"schedule.{name}", getattr(s, name), flags)
    _positive("schedule.gen_steps", s.gen_steps, flags, allow_zero=True)
    if spec.generator_objective == "impressions":
        _validate_impressions(config, flags)
    elif spec.generator_objective != "dafl" and s.gen_steps == 0:
        raise ConfigError(
            f"method {config.method} trains its generator adversarially: "
            f"{setting('schedule.gen_steps', 0, flags)} must be >= 1"
        )
    for key, value in (
        ("student.lr", config.student.lr),
        ("generator.lr", config.generator.lr),
        ("generator.latent_dim", config.generator.latent_dim),
        ("lrwa.alpha", config.lrwa.alpha),
        ("loss.js_temperature", config.loss.js_temperature),
    ):
        _positive(key, value, flags)
    if config.loss.entropy_log_base <= 1:
        raise ConfigError(
            f"{setting('loss.entropy_log_base', config.loss.entropy_log_base, flags)}: must be > 1 (10 or e)"
        )
    for name in ("tv", "div"):
        weight = getattr(config.loss, name)
        _positive(f"loss.{name}", weight, flags, allow_zero=True)
        if weight > 0 and spec.generator_objective == "impressions":
            raise ConfigError(
                f"{setting(f'loss.{name}', weight, flags)}: an image prior of the generator, "
                f"and method {config.method} has none (it optimises data impressions); leave it at 0"
            )
    if config.loss.div > 0 and s.batch_size < 2:
        raise ConfigError(
            f"{setting('loss.div', config.loss.div, flags)} pairs the samples of a batch: "
            f"{setting('schedule.batch_size', s.batch_size, flags)} must be >= 2"
        )
    r = config.replay
    if spec.replay == "memory":
        for name in ("slots", "slot_size", "push_every"):
            _positive(f"replay.{name}", getattr(r, name), flags)
        if r.slot_size > s.batch_size:
            raise ConfigError(
                f"{setting('replay.slot_size', r.slot_size, flags)} exceeds "
                f"{setting('schedule.batch_size', s.batch_size, flags)}: a slot holds the first slot_size samples "
                "of a generated batch; lower --memory-slot-size or raise --batch-size"
            )
    if spec.replay == "generative":
        for name in ("vae_latent", "vae_lr", "replay_batch"):
            _positive(f"replay.{name}", getattr(r, name), flags)
    _positive("augment.shift", config.augment.shift, flags, allow_zero=True)
    if not 0 <= config.augment.rotate <= 180:
        raise ConfigError(f"{setting('augment.rotate', config.augment.rotate, flags)}: must be in [0, 180] degrees")
    _positive("lrwa.align_every", config.lrwa.align_every, flags, allow_zero=True)
    _positive("runtime.eval_batch_size", config.runtime.eval_batch_size, flags)
    _positive("diagnostics.grad_norm_every", config.diagnostics.grad_norm_every, flags, allow_zero=True)
    _positive("diagnostics.sample_grid", config.diagnostics.sample_grid, flags, allow_zero=True)
    _positive("runtime.stop_after", config.runtime.stop_after, flags, allow_zero=True)
    if config.runtime.compile_mode != "default" and not config.runtime.compile:
        raise ConfigError(
            f"{setting('runtime.compile_mode', config.runtime.compile_mode, flags)} sets how the "
            f"compiled steps run; add {(flags or {}).get('runtime.compile', 'runtime.compile=true')}"
        )


def _validate_impressions(config: TrainConfig, flags: Mapping[str, str] | None) -> None:
    """ZSKD: no generator to step, impressions that split evenly over the classes and the betas."""
    if config.schedule.gen_steps != 0:
        raise ConfigError(
            f"method {config.method} trains no generator: "
            f"{setting('schedule.gen_steps', config.schedule.gen_steps, flags)} has nothing to step; drop it"
        )
    i = config.impressions
    for name in ("count", "steps", "lr", "temperature", "chunk"):
        _positive(f"impressions.{name}", getattr(i, name), flags)
    _positive("impressions.shift", i.shift, flags, allow_zero=True)
    _positive("kd.temperature", config.kd.temperature, flags)
    try:
        betas = i.beta_values()
    except ValueError:
        betas = ()
    if not betas or min(betas) <= 0:
        raise ConfigError(f"{setting('impressions.betas', i.betas, flags)}: must be positive numbers, e.g. 1.0,0.1")
    classes = run_input(config.data, config.teacher).num_classes
    if i.count % (classes * len(betas)):
        raise ConfigError(
            f"{setting('impressions.count', i.count, flags)}: must split evenly over the {classes} classes and the "
            f"{len(betas)} betas, a multiple of {classes * len(betas)}"
        )


def _validate_input_space(config: TrainConfig, flags: Mapping[str, str] | None = None) -> None:
    """A dataset or all three of the input's sizes, each in range; with no dataset, a teacher file."""
    data = config.data
    given = [key for key in INPUT_KEYS if input_value(data, key) is not None]
    if data.dataset is not None:
        if given:
            raise ConfigError(
                f"{setting(given[0], input_value(data, given[0]), flags)} describes a teacher's input where no dataset "
                f"is named, and this run names {setting('data.dataset', data.dataset, flags)}; drop one of them"
            )
        return
    missing = [key for key in INPUT_KEYS if key not in given]
    if missing:
        names = ", ".join((flags or {}).get(key, key) for key in missing)
        raise ConfigError(f"with no dataset named, the teacher's input needs {names} too (or name a --dataset)")
    for key, smallest in (("data.num_classes", 2), ("data.in_channels", 1)):
        if input_value(data, key) < smallest:
            raise ConfigError(f"{setting(key, input_value(data, key), flags)}: must be >= {smallest}")
    size = data.image_size
    if size < SMALLEST_SIZE or size % SIZE_STEP:
        raise ConfigError(
            f"{setting('data.image_size', size, flags)}: the generator makes images of a multiple of "
            f"{SIZE_STEP}, at least {SMALLEST_SIZE}; pass the size your teacher takes (e.g. 28 or 32)"
        )
    if config.teacher.path is None:
        raise ConfigError(
            "with no dataset named there is no teacher to train: pass --teacher FILE (your model), or a --dataset"
        )
    if config.data.test_data is None and method_spec(config.method).generator_objective == "impressions":
        raise ConfigError(
            f"method {config.method} trains no generator, so with no dataset and no test data there is nothing to "
            f"measure its student on: pass {(flags or {}).get('data.test_data', 'data.test_data')} DIR or FILE.npz "
            "(a few labelled images of your own), or another method"
        )


def validate_on_device(config: TrainConfig, device: str, flags: Mapping[str, str] | None = None) -> None:
    """The checks that need the device a run resolved to (``cuda:0``; ``auto`` is known only once torch is
    loaded)."""
    if config.runtime.compile_mode == "reduce-overhead" and device.split(":")[0] != "cuda":
        raise ConfigError(
            f"{setting('runtime.compile_mode', config.runtime.compile_mode, flags)} replays CUDA graphs, and this "
            f"run is on {device}; drop it, or run on a CUDA device"
        )


def validate_pretrain_config(config: PretrainConfig, flags: Mapping[str, str] | None = None) -> None:
    for name in ("epochs", "batch_size", "lr", "eval_batch_size"):
        _positive(name, getattr(config, name), flags)
