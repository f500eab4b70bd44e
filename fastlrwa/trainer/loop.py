"""The one training loop every method runs: g generator steps, then s student steps, I times an epoch.

The loop only orchestrates: the updates are the compiled functions in ``fastlrwa.updates``, the
replay scheme is the method's, and everything the host reads (losses, NaN checks) is read once per
epoch or through lagged non-blocking snapshots, never by a sync inside a step.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Callable, Iterator

import torch

from fastlrwa.atomic_io import atomic_torch_save
from fastlrwa.config.schema import to_dict
from fastlrwa.data import evaluate
from fastlrwa.errors import CheckpointError, NonFiniteLossError
from fastlrwa.metrics.run_log import MetricsLog
from fastlrwa.models import ModelMeta, save_model_checkpoint
from fastlrwa.progress import EpochProgress
from fastlrwa.trainer.build import RunParts
from fastlrwa.trainer.epoch_stats import EpochStats, format_live
from fastlrwa.trainer.rng_state import capture_rng_state, restore_rng_state
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.teacher import file_sha256

CHECKPOINT_FORMAT = "fastlrwa-train"
WATCHED_LOSSES = ("loss_student", "loss_generator")
LIVE_KEYS = ("loss_student", "loss_generator", "grad_cos")


class StopRequested(Exception):
    """Ctrl-C was pressed; a checkpoint was written at the last safe point."""


@contextmanager
def _interrupt_flag() -> Iterator[dict[str, bool]]:
    """The first Ctrl-C asks the loop to stop at the next safe point; a second one stops at once."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    def __init__(self, parts: RunParts, run: RunDir, progress: EpochProgress) -> None:
        self.parts = parts
        self.run = run
        self.progress = progress
        self.config = parts.config
        self.stats = EpochStats(parts.device, WATCHED_LOSSES)
        self.metrics_log = MetricsLog(run.root)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
        self.iteration = 0  # completed iterations of epoch `epoch + 1`
        self.epoch_train_time = 0.0
        self.teacher_sha256 = file_sha256(parts.teacher_path)
        self.started_wall = 0.0
        self._writer = None

    # ----- checkpointing -------------------------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "config": to_dict(self.config),
            "teacher": {"path": str(self.parts.teacher_path), "sha256": self.teacher_sha256},
            "epoch": self.epoch,
            "iteration": self.iteration,
            "epoch_train_time": self.epoch_train_time,
            "epoch_stats": self.stats.state_dict(),
            "history": self.history,
            "rng": capture_rng_state({"trainer": self.parts.rng}),
        }
        for key, owner in self.parts.modules_with_state().items():
            state[key] = owner.state_dict()
        return state

    def save_checkpoint(self) -> None:
        """Atomically replace the checkpoint, after checking nothing non-finite has entered the state."""
        self._raise_if_non_finite()
        atomic_torch_save(self._checkpoint_state(), self.run.checkpoint)

    def load_checkpoint(self) -> None:
        path = self.run.checkpoint
        try:
            state = torch.load(path, map_location=self.parts.device, weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file
            raise CheckpointError(f"{path} cannot be read ({type(error).__name__}); it is damaged: "
                                  "restore it from a copy or start afresh with --force") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a fastlrwa training checkpoint; start afresh with --force")
        if state["teacher"]["sha256"] != self.teacher_sha256:
            raise CheckpointError(
                f"the teacher file {self.parts.teacher_path} differs from the one this run was started with "
                f"({state['teacher']['path']}); resume with the original teacher"
            )
        for key, owner in self.parts.modules_with_state().items():
            owner.load_state_dict(state[key])
        restore_rng_state(state["rng"], {"trainer": self.parts.rng})
        self.epoch = state["epoch"]
        self.iteration = state["iteration"]
        self.epoch_train_time = state["epoch_train_time"]
        self.history = list(state["history"])
        self.stats.load_state_dict(state["epoch_stats"])
        self.metrics_log.truncate_after(self.epoch)

    def _raise_if_non_finite(self) -> None:
        bad = self.stats.first_non_finite()
        if bad is not None:
            step, name, value = bad
            iterations = self.config.schedule.iters_per_epoch
            steps_per_iteration = self.config.schedule.gen_steps + self.config.schedule.student_steps
            raise NonFiniteLossError(
                f"{name} became {value} at training step {step} (epoch {self.epoch + 1}, around iteration "
                f"{(step - 1) // max(steps_per_iteration, 1) % iterations + 1}); stopped, the last good checkpoint "
                f"{self.run.checkpoint} (epoch {self.epoch}) is kept; lower the learning rates or disable --amp"
            )

    # ----- one iteration -------------------------------------------------------------------------------------------
    def _latent(self) -> torch.Tensor:
        p = self.parts
        return torch.randn(self.config.schedule.batch_size, self.config.generator.latent_dim,
                           device=p.device, generator=p.rng)

    def _iteration(self) -> None:
        p = self.parts
        for _ in range(self.config.schedule.gen_steps):
            images, teacher_logits, logged = p.generator_update.step(self._latent())
            if p.replay is not None:
                logged.update(p.replay.observe(images, teacher_logits))
            self.stats.add(logged)
        for _ in range(self.config.schedule.student_steps):
            with torch.no_grad(), torch.autocast(p.device.type, dtype=p.autocast_dtype or torch.float32,
                                                 enabled=p.autocast_dtype is not None):
                images = p.generator(self._latent())
                teacher_logits = p.teacher(images).float()
            memory = p.replay.sample() if p.replay is not None and p.replay.is_ready() else (None, None)
            self.stats.add(p.student_update.step(images, teacher_logits, *memory))

    # ----- one epoch -----------------------------------------------------------------------------------------------
    def _finish_epoch(self) -> dict[str, Any]:
        p = self.parts
        epoch = self.epoch + 1
        if p.replay is not None:
            p.replay.end_epoch(epoch)
        lr = p.student_optimizer.param_groups[0]["lr"]
        p.student_scheduler.step()
        means = self.stats.means()
        self._raise_if_non_finite()
        eval_start = time.perf_counter()
        result = evaluate(p.student, p.test_set, batch_size=self.config.runtime.eval_batch_size,
                          autocast_dtype=p.autocast_dtype)
        eval_time = time.perf_counter() - eval_start
        s = self.config.schedule
        student_steps = s.iters_per_epoch * s.student_steps
        samples = s.iters_per_epoch * (s.gen_steps + s.student_steps) * s.batch_size
        record: dict[str, Any] = {
            "epoch": epoch,
            "test_accuracy": result.accuracy,
            **{k: v for k, v in sorted(means.items())},
            "lr_student": lr,
            "epoch_time_s": self.epoch_train_time,
            "step_time_s": self.epoch_train_time / max(student_steps, 1),
            "samples_per_s": samples / max(self.epoch_train_time, 1e-9),
            "eval_time_s": eval_time,
            "wall_time_s": time.perf_counter() - self.started_wall,
        }
        self.epoch = epoch
        self.iteration = 0
        self.epoch_train_time = 0.0
        self.stats.reset()
        self.history.append(record)
        return record

    def _publish(self, record: dict[str, Any]) -> None:
        # The metrics line goes first: a crash before the checkpoint leaves a line that --resume truncates,
        # never a checkpoint whose epoch has no line.
        self.metrics_log.append(record)
        save_model_checkpoint(
            self.run.student, self.parts.student, self._student_meta(),
            extra={"epoch": record["epoch"], "test_accuracy": record["test_accuracy"], "method": self.config.method},
        )
        self.save_checkpoint()
        writer = self._tensorboard()
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                writer.add_scalar(key, value, record["epoch"])
        writer.flush()
        self.progress.log(
            f"epoch {record['epoch']}/{self.config.schedule.epochs}  test acc {record['test_accuracy']:.2f}%  "
            + format_live(record, LIVE_KEYS)
            + f"  {record['samples_per_s']:.0f} samples/s"
        )

    def _student_meta(self) -> ModelMeta:
        info = self.parts.info
        return ModelMeta(arch=self.config.student.arch, num_classes=info.num_classes, in_channels=info.channels,
                         image_size=info.image_size, dataset=info.name, mean=tuple(info.mean), std=tuple(info.std))

    def _tensorboard(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run.tensorboard), purge_step=self.epoch)
        return self._writer

    # ----- the run -------------------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train until the configured number of epochs; checkpoint every epoch and on Ctrl-C."""
        s = self.config.schedule
        last = min(s.epochs, self.config.runtime.stop_after or s.epochs)
        self.started_wall = time.perf_counter() - (self.history[-1]["wall_time_s"] if self.history else 0.0)
        with _interrupt_flag() as interrupt:
            try:
                while self.epoch < last:
                    self.progress.start_epoch(self.epoch + 1, s.epochs, s.iters_per_epoch)
                    self.progress.advance(self.iteration)
                    while self.iteration < s.iters_per_epoch:
                        started = time.perf_counter()
                        self._iteration()
                        self.iteration += 1
                        if self.parts.device.type == "cuda" and self.iteration == s.iters_per_epoch:
                            torch.cuda.synchronize(self.parts.device)
                        self.epoch_train_time += time.perf_counter() - started
                        self.progress.advance(1, format_live(self.stats.live(), LIVE_KEYS))
                        if interrupt["stop"]:
                            self.save_checkpoint()
                            raise StopRequested
                    self._publish(self._finish_epoch())
            finally:
                if self._writer is not None:
                    self._writer.close()
        return self.history
