"""Checks on a resolved config, so that a bad value fails before any work with a line naming it."""

from __future__ import annotations

from fastlrwa.config.methods import method_spec
from fastlrwa.config.schema import PretrainConfig, TrainConfig
from fastlrwa.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(choices)}")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={value} must be {'>= 0' if allow_zero else '> 0'}")


def validate_train_config(config: TrainConfig) -> None:
    spec = method_spec(config.method)
    _choice("loss.js_variant", config.loss.js_variant, ("official", "paper"))
    _choice("lrwa.objective", config.lrwa.objective, ("official", "paper"))
    _choice("lrwa.hvp", config.lrwa.hvp, ("exact", "fd", "first_order"))
    _choice("lrwa.exact_method", config.lrwa.exact_method, ("reverse", "forward"))
    _choice("replay.joint_objective", config.replay.joint_objective, ("official", "paper"))
    _choice("student.schedule", config.student.schedule, ("cosine", "constant"))
    _choice("runtime.amp", config.runtime.amp, AMP_MODES)
    s = config.schedule
    for name in ("epochs", "iters_per_epoch", "batch_size"):
        _positive(f"schedule.{name}", getattr(s, name))
    _positive("schedule.gen_steps", s.gen_steps, allow_zero=True)
    _positive("schedule.student_steps", s.student_steps)
    if spec.generator_objective != "dafl" and s.gen_steps == 0:
        raise ConfigError(f"method {config.method} trains its generator adversarially: schedule.gen_steps must be >= 1")
    _positive("student.lr", config.student.lr)
    _positive("generator.lr", config.generator.lr)
    _positive("generator.latent_dim", config.generator.latent_dim)
    _positive("lrwa.alpha", config.lrwa.alpha)
    _positive("loss.js_temperature", config.loss.js_temperature)
    if config.loss.entropy_log_base <= 1:
        raise ConfigError(f"loss.entropy_log_base={config.loss.entropy_log_base} must be > 1 (10 or e)")
    r = config.replay
    if spec.replay == "memory":
        _positive("replay.slots", r.slots)
        _positive("replay.slot_size", r.slot_size)
        _positive("replay.push_every", r.push_every)
        if r.slot_size > s.batch_size:
            raise ConfigError(
                f"replay.slot_size={r.slot_size} exceeds schedule.batch_size={s.batch_size}: a slot holds the first "
                "slot_size samples of a generated batch; lower --memory-slot-size or raise --batch-size"
            )
    if spec.replay == "generative":
        _positive("replay.vae_latent", r.vae_latent)
        _positive("replay.vae_lr", r.vae_lr)
        _positive("replay.replay_batch", r.replay_batch)
    _positive("runtime.eval_batch_size", config.runtime.eval_batch_size)
    _positive("runtime.stop_after", config.runtime.stop_after, allow_zero=True)


def validate_pretrain_config(config: PretrainConfig) -> None:
    _choice("amp", config.amp, AMP_MODES)
    _choice("loader", config.loader, ("torch", "dali"))
    for name in ("epochs", "batch_size", "lr", "eval_batch_size"):
        _positive(name, getattr(config, name))
