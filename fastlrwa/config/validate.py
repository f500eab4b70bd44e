"""Checks on a resolved config, so that a bad value fails before any work with a line naming it.

A message names a setting the way the user set it: ``flags`` maps config keys to the command's flags
(``schedule.epochs`` -> ``--epochs``); a key without a flag (a preset's value) is named as the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastlrwa.config.methods import method_spec
from fastlrwa.config.schema import PretrainConfig, TrainConfig
from fastlrwa.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")


def setting(key: str, value: Any, flags: Mapping[str, str] | None) -> str:
    """``--epochs 0`` where ``key`` has a flag, else ``schedule.epochs=0``."""
    flag = (flags or {}).get(key)
    return f"{flag} {value}" if flag else f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"


def _choice(key: str, value: str, choices: tuple[str, ...], flags: Mapping[str, str] | None) -> None:
    if value not in choices:
        raise ConfigError(f"{setting(key, value, flags)} is not valid; choose one of: {', '.join(choices)}")


def _positive(key: str, value: float, flags: Mapping[str, str] | None, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{setting(key, value, flags)}: must be {'>= 0' if allow_zero else '> 0'}")


def validate_train_config(config: TrainConfig, flags: Mapping[str, str] | None = None) -> None:
    spec = method_spec(config.method)
    for key, value, choices in (
        ("loss.js_variant", config.loss.js_variant, ("official", "paper")),
        ("lrwa.objective", config.lrwa.objective, ("official", "paper", "released")),
        ("lrwa.hvp", config.lrwa.hvp, ("exact", "fd", "first_order")),
        ("lrwa.exact_method", config.lrwa.exact_method, ("auto", "forward", "reverse")),
        ("replay.joint_objective", config.replay.joint_objective, ("official", "paper")),
        ("student.schedule", config.student.schedule, ("cosine", "constant")),
        ("student.init", config.student.init, ("layer_default", "kaiming")),
        ("runtime.amp", config.runtime.amp, AMP_MODES),
    ):
        _choice(key, value, choices, flags)
    s = config.schedule
    for name in ("epochs", "iters_per_epoch", "batch_size", "student_steps"):
        _positive(f"schedule.{name}", getattr(s, name), flags)
    _positive("schedule.gen_steps", s.gen_steps, flags, allow_zero=True)
    if spec.generator_objective != "dafl" and s.gen_steps == 0:
        raise ConfigError(f"method {config.method} trains its generator adversarially: "
                          f"{setting('schedule.gen_steps', 0, flags)} must be >= 1")
    for key, value in (("student.lr", config.student.lr), ("generator.lr", config.generator.lr),
                       ("generator.latent_dim", config.generator.latent_dim), ("lrwa.alpha", config.lrwa.alpha),
                       ("loss.js_temperature", config.loss.js_temperature)):
        _positive(key, value, flags)
    if config.loss.entropy_log_base <= 1:
        raise ConfigError(f"{setting('loss.entropy_log_base', config.loss.entropy_log_base, flags)}: must be > 1 "
                          "(10 or e)")
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
    _positive("runtime.eval_batch_size", config.runtime.eval_batch_size, flags)
    _positive("runtime.stop_after", config.runtime.stop_after, flags, allow_zero=True)


def validate_pretrain_config(config: PretrainConfig, flags: Mapping[str, str] | None = None) -> None:
    _choice("amp", config.amp, AMP_MODES, flags)
    _choice("loader", config.loader, ("torch", "dali"), flags)
    for name in ("epochs", "batch_size", "lr", "eval_batch_size"):
        _positive(name, getattr(config, name), flags)
