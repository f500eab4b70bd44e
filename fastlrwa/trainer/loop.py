"""The one training loop every method runs: g generator steps, then s student steps, I times an epoch.

The loop only orchestrates: the updates are the compiled functions in ``fastlrwa.updates``, the
replay scheme is the method's, and everything the host reads (losses, NaN checks) is read once per
epoch or through lagged non-blocking snapshots, never by a sync inside a step.

Distributed (torchrun), every rank runs this loop on its own latents and replay memory with the
gradients averaged, and the ranks meet at fixed points only: once per iteration to agree on a
Ctrl-C (a CPU all-reduce of one flag, a fraction of a millisecond on one node, never a GPU sync),
and at epoch ends to average the loss means and the BatchNorm running statistics, agree on a NaN
and gather the checkpoint. Rank 0 alone evaluates and writes the run's files.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import torch

from fastlrwa.atomic_io import atomic_torch_save
from fastlrwa.config.schema import TrainConfig
from fastlrwa.data import evaluate, predict
from fastlrwa.errors import NonFiniteLossError
from fastlrwa.models import ModelMeta, save_model_checkpoint
from fastlrwa.models.batchnorm import batchnorm_running_stats
from fastlrwa.options import flag_names, switch_for
from fastlrwa.progress import EpochProgress
from fastlrwa.run_log.event_log import EventLog
from fastlrwa.run_log.metrics_file import MetricsLog
from fastlrwa.trainer.build import RunParts
from fastlrwa.trainer.checkpoint import (
    RunPosition,
    TeacherFile,
    checkpoint_state,
    read_checkpoint,
    restore_checkpoint,
)
from fastlrwa.trainer.diagnostics import (
    argmax_agreement,
    fixed_latents,
    generated_samples,
    image_grid,
    normalised_entropy,
)
from fastlrwa.trainer.epoch_stats import EpochStats, format_live
from fastlrwa.trainer.heldout import HeldOutSamples
from fastlrwa.trainer.impressions import load_or_synthesise
from fastlrwa.trainer.run_dir import RunDir
from fastlrwa.trainer.stop_signals import StopRequested, stop_request
from fastlrwa.trainer.teacher import file_sha256
from fastlrwa.trainer.write_guard import guarded_write

WATCHED_LOSSES = ("loss_student", "loss_generator")
LIVE_KEYS = ("loss_student", "loss_generator", "grad_cos", "agree_gen", "agree_heldout")
CLASS_HISTOGRAM = "gen_class_hist"


class Trainer:
    def __init__(self, parts: RunParts, run: RunDir, progress: EpochProgress) -> None:
        self.parts = parts
        self.context = parts.context
        self.run = run
        self.progress = progress
        self.config = parts.config
        self.stats = EpochStats(parts.device, WATCHED_LOSSES)
        self.metrics_log = MetricsLog(run.root)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
        self.iteration = 0  # completed iterations of epoch `epoch + 1`
        self.epoch_train_time = 0.0
        self.teacher = TeacherFile(parts.teacher_path, file_sha256(parts.teacher_path))
        self.started_wall = 0.0
        self._events: EventLog | None = None  # opened at the first epoch's end
        self._saved: tuple[int, int] | None = None  # (epoch, iteration) of the checkpoint on disk
        self._teacher_test_predictions: torch.Tensor | None = None  # computed at the first evaluation
        grid = self.config.diagnostics.sample_grid
        self._sample_latents = (
            fixed_latents(grid, self.config.generator.latent_dim, self.config.runtime.seed, parts.device)
            if grid > 0 and self.context.is_main and parts.generator_update is not None
            else None
        )
        # ZSKD trains no generator: its samples are its impressions, and it has no held-out generated set.
        self._heldout = (
            HeldOutSamples(
                self.config.generator.latent_dim,
                self.config.runtime.seed,
                parts.device,
                batch_size=self.config.runtime.eval_batch_size,
            )
            if self.context.is_main and parts.generator_update is not None
            else None
        )

    # ----- checkpointing -------------------------------------------------------------------------------------------
    def _position(self) -> RunPosition:
        return RunPosition(self.epoch, self.iteration, self.epoch_train_time, self.history)

    def save_checkpoint(self) -> None:
        """Atomically replace the checkpoint, after checking nothing non-finite has entered the state.

        Every rank calls it at the same point; rank 0 writes, and no rank returns before the file is in
        place (a rank that exited first on Ctrl-C would make torchrun kill rank 0 mid-write).
        """
        self._raise_if_non_finite()
        state = checkpoint_state(self.parts, self.stats, self._position(), self.teacher)
        if state is not None:
            with self._guarded(self.run.checkpoint):
                atomic_torch_save(state, self.run.checkpoint)
        self._saved = (self.epoch, self.iteration)
        self.context.barrier()

    def kept_checkpoint(self) -> str:
        """What a run that ends now leaves to resume from, for its last line."""
        if self._saved is None:
            return "no checkpoint was written yet, so there is nothing to resume"
        epoch, iteration = self._saved
        where = f"epoch {epoch}" + (f", iteration {iteration} of epoch {epoch + 1}" if iteration else "")
        return f"the last good checkpoint {self.run.checkpoint} ({where}) is kept"

    def _guarded(self, path):
        """A failed write of ``path`` ends the run as one line naming the checkpoint still on disk."""
        return guarded_write(path, self.kept_checkpoint(), f"continue with --out {self.run.root} --resume")

    def load_checkpoint(self) -> None:
        """Restore the run from its checkpoint (see :mod:`fastlrwa.trainer.checkpoint`)."""
        state = read_checkpoint(self.run.checkpoint, self.parts.device, self.teacher)
        position = restore_checkpoint(state, self.parts, self.stats, self.progress.log)
        self.epoch, self.iteration = position.epoch, position.iteration
        self._saved = (self.epoch, self.iteration)
        self.epoch_train_time, self.history = position.epoch_train_time, position.history
        if self.context.is_main:
            self.metrics_log.truncate_after(self.epoch)

    def _raise_if_non_finite(self) -> None:
        """Raise on every rank when a watched loss went non-finite on any rank (each rank must call it)."""
        first = self.context.first_report(self.stats.first_non_finite())
        if first is not None:
            rank, (step, name, value) = first
            where = f" on rank {rank}" if self.context.is_distributed else ""
            iterations = self.config.schedule.iters_per_epoch
            steps_per_iteration = self.config.schedule.gen_steps + self.config.schedule.student_steps
            # A NaN in the first epoch comes before any checkpoint: say what is really on disk.
            kept = (
                f"the last good checkpoint {self.run.checkpoint} (epoch {self.epoch}) is kept"
                if self.run.checkpoint.exists()
                else "no checkpoint was written yet, so there is nothing to resume"
            )
            flags = flag_names(TrainConfig)
            retry = f"lower {flags['student.lr']} / {flags['generator.lr']}"
            if self.parts.autocast_dtype is not None or self.parts.generator.compute_dtype is not None:
                retry += f" or run in float32 with {switch_for(TrainConfig, 'runtime.amp', 'none')}"
            raise NonFiniteLossError(
                f"{name} became {value}{where} at training step {step} (epoch {self.epoch + 1}, around iteration "
                f"{(step - 1) // max(steps_per_iteration, 1) % iterations + 1}); stopped: {kept}; start again with "
                f"{retry} (and --force to reuse --out {self.run.root})"
            )

    # ----- one iteration -------------------------------------------------------------------------------------------
    def _latent(self) -> torch.Tensor:
        p = self.parts
        return torch.randn(
            self.config.schedule.batch_size, self.config.generator.latent_dim, device=p.device, generator=p.rng
        )

    def _iteration(self) -> None:
        p = self.parts
        gen_steps = self.config.schedule.gen_steps if p.generator_update is not None else 0
        for step in range(gen_steps):
            images, teacher_logits, student_logits, logged = p.generator_update.step(
                self._latent(), index=self.iteration * gen_steps + step
            )
            if student_logits is not None:
                logged["agree_gen"] = argmax_agreement(student_logits, teacher_logits)
            if p.replay is not None:
                logged.update(p.replay.observe_generator_batch(images, teacher_logits))
            self.stats.add(logged)
        steps = self.config.schedule.student_steps
        if steps == 0:
            return
        if p.impressions is not None:
            batches: Any = (p.impressions() for _ in range(steps))  # drawn one by one, between the replay's draws
        else:
            # The generator does not change during the student steps: their batches are generated in one call.
            all_images, all_logits = p.student_batch(torch.cat([self._latent() for _ in range(steps)]), steps)
            batches = zip(all_images.chunk(steps), all_logits.chunk(steps))
        for step, (images, teacher_logits) in enumerate(batches):
            self.stats.count(CLASS_HISTOGRAM, teacher_logits.argmax(dim=1), p.info.num_classes)
            memory = p.replay.sample() if p.replay is not None and p.replay.is_ready() else (None, None)
            self.stats.add(p.student_update.step(images, teacher_logits, *memory, index=self.iteration * steps + step))
            if p.replay is not None:
                p.replay.observe_student_batch(images, teacher_logits)

    # ----- one epoch -----------------------------------------------------------------------------------------------
    def _finish_epoch(self) -> dict[str, Any]:
        p = self.parts
        epoch = self.epoch + 1
        if p.replay is not None:
            p.replay.end_epoch(epoch)
        lr = p.student_optimizer.param_groups[0]["lr"]
        p.student_scheduler.step()
        means = self.context.mean_over_ranks(self.stats.means())
        class_counts = self._class_counts()
        self._raise_if_non_finite()
        # Each rank's running statistics saw only its own batches; the evaluated and saved model uses their mean.
        self.context.average_(
            list(batchnorm_running_stats(p.student).values()) + list(batchnorm_running_stats(p.generator).values())
        )
        record = self._epoch_record(epoch, lr, means, class_counts) if self.context.is_main else None
        record = self.context.broadcast_object(record)
        self.epoch = epoch
        self.iteration = 0
        self.epoch_train_time = 0.0
        self.stats.reset()
        self.history.append(record)
        return record

    def _class_counts(self) -> list[int]:
        """The epoch's histogram of the teacher's classes on the student's batches, summed over the ranks."""
        counts = self.stats.counters().get(CLASS_HISTOGRAM)
        if counts is None:
            return []
        self.context.average_([counts])
        return [round(count * self.context.world_size) for count in counts.tolist()]

    def _epoch_record(self, epoch: int, lr: float, means: dict[str, float], class_counts: list[int]) -> dict[str, Any]:
        p = self.parts
        # Training's peak since the epoch started (reset in fit), read before the evaluation allocates.
        peak = {"peak_memory_mb": torch.cuda.max_memory_allocated(p.device) / 2**20} if p.device.type == "cuda" else {}
        eval_start = time.perf_counter()
        measured = {**self._test_metrics(), **self._heldout_metrics()}
        eval_time = time.perf_counter() - eval_start
        s = self.config.schedule
        student_steps = s.iters_per_epoch * s.student_steps
        samples = s.iters_per_epoch * (s.gen_steps + s.student_steps) * s.batch_size * self.context.world_size
        return {
            "epoch": epoch,
            **measured,
            **{k: v for k, v in sorted(means.items())},
            **(
                {"gen_class_entropy": normalised_entropy(class_counts), CLASS_HISTOGRAM: class_counts}
                if class_counts
                else {}
            ),
            "lr_student": lr,
            "epoch_time_s": self.epoch_train_time,
            "step_time_s": self.epoch_train_time / max(student_steps, 1),
            "samples_per_s": samples / max(self.epoch_train_time, 1e-9),
            "eval_time_s": eval_time,
            "wall_time_s": time.perf_counter() - self.started_wall,
            **peak,
        }

    def _test_metrics(self) -> dict[str, float]:
        """The student's accuracy on the test set and its agreement with the teacher there; nothing where the run
        has no test data."""
        p = self.parts
        if p.test_set is None:
            return {}
        batch_size = self.config.runtime.eval_batch_size
        if self._teacher_test_predictions is None:  # the frozen teacher's predictions never change
            self._teacher_test_predictions = predict(
                p.teacher, p.test_set, batch_size=batch_size, autocast_dtype=p.autocast_dtype
            )
        result = evaluate(
            p.student,
            p.test_set,
            batch_size=batch_size,
            autocast_dtype=p.autocast_dtype,
            reference=self._teacher_test_predictions,
        )
        return {"test_accuracy": result.accuracy, "agree_test": result.agreement}

    def _heldout_metrics(self) -> dict[str, float]:
        if self._heldout is None:
            return {}
        p = self.parts
        return {
            "agree_heldout": self._heldout.agreement(p.generator, p.student, p.teacher, autocast_dtype=p.autocast_dtype)
        }

    def _publish(self, record: dict[str, Any]) -> None:
        if self.context.is_main:
            # The epoch's files go before the checkpoint: a crash or a failed write before it leaves lines that
            # --resume truncates (and events it hides), never a checkpoint whose epoch has no line.
            with self._guarded(self.run.metrics):
                self.metrics_log.append(record)
            with self._guarded(self.run.student):
                save_model_checkpoint(
                    self.run.student,
                    self.parts.student,
                    ModelMeta.for_dataset(self.config.student.arch, self.parts.info),
                    extra={
                        "epoch": record["epoch"],
                        "method": self.config.method,
                        **{key: record[key] for key in ("test_accuracy", "agree_heldout") if key in record},
                    },
                )
            self._write_events(record)
        self.save_checkpoint()
        if not self.context.is_main:
            return
        accuracy = f"test acc {record['test_accuracy']:.2f}%" if "test_accuracy" in record else "accuracy not measured"
        self.progress.log(
            f"epoch {record['epoch']}/{self.config.schedule.epochs}  {accuracy}  "
            + format_live(record, LIVE_KEYS)
            + f"  {record['samples_per_s']:.0f} samples/s"
        )

    def _write_events(self, record: dict[str, Any]) -> None:
        """The epoch's scalars, its class histogram (one bucket per class) and the grid of samples from the fixed
        latents, for TensorBoard."""
        epoch = record["epoch"]
        if self._events is None:
            # A resumed run logs again the epochs after its checkpoint: their older events are hidden.
            self._events = EventLog(self.run.tensorboard, first_step=epoch)
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._events.scalar(key, value, epoch)
        counts = record.get(CLASS_HISTOGRAM, [])
        if sum(counts) > 0:
            self._events.histogram_raw(
                CLASS_HISTOGRAM,
                epoch,
                min=0,
                max=len(counts) - 1,
                num=sum(counts),
                sum=sum(k * c for k, c in enumerate(counts)),
                sum_squares=sum(k * k * c for k, c in enumerate(counts)),
                bucket_limits=[k + 0.5 for k in range(len(counts))],
                bucket_counts=counts,
            )
        if self._sample_latents is not None:
            samples = generated_samples(self.parts.generator, self._sample_latents)
            self._events.image("generated_samples", image_grid(samples), epoch)
        with self._guarded(self.run.tensorboard):
            self._events.flush()

    def _build_impressions(self) -> None:
        """ZSKD's transfer set, read from the run directory or synthesised (and kept there) before the first epoch;
        every rank builds the same set, rank 0 alone keeps the file."""
        p = self.parts
        path = self.run.impressions if self.context.is_main else None
        pixels = load_or_synthesise(
            path,
            p.teacher,
            p.teacher_meta.arch,
            p.info,
            self.config.impressions,
            self.config.runtime.seed,
            self.teacher.sha256,
            p.device,
            self.progress,
            self.progress.log,
        )
        p.impressions.use(pixels)

    # ----- the run -------------------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train until the configured number of epochs; checkpoint every epoch and on Ctrl-C."""
        s = self.config.schedule
        last = min(s.epochs, self.config.runtime.stop_after or s.epochs)
        self.started_wall = time.perf_counter() - (self.history[-1]["wall_time_s"] if self.history else 0.0)
        with stop_request() as request:
            if self.parts.impressions is not None and self.epoch < last:
                self._build_impressions()
            while self.epoch < last:
                self.progress.start_epoch(self.epoch + 1, s.epochs, s.iters_per_epoch)
                if self.parts.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.parts.device)
                self.progress.advance(self.iteration)
                while self.iteration < s.iters_per_epoch:
                    started = time.perf_counter()
                    self._iteration()
                    self.iteration += 1
                    if self.parts.device.type == "cuda" and self.iteration == s.iters_per_epoch:
                        torch.cuda.synchronize(self.parts.device)
                    self.epoch_train_time += time.perf_counter() - started
                    self.progress.advance(1, format_live(self.stats.live(), LIVE_KEYS))
                    if self.context.any_rank(bool(request["stop"])):
                        self.save_checkpoint()
                        raise StopRequested(request["stop"] or signal.SIGINT)
                self._publish(self._finish_epoch())
        return self.history
