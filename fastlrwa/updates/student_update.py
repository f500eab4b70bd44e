"""Applying a student update: the compiled pure step computes the gradients, a fused SGD applies them.

Until the replay scheme has something to replay (the memory bank fills on its schedule, the VAE
after its warm-up), the replay methods update with the plain acquisition step, as the authors do.

The LRWA objective ``released`` is what the authors' released LRWA step computes: it calls
``higher.innerloop_ctx`` with ``copy_initial_weights=True`` (higher's default), so its retention loss
after the inner step sends no gradient to the student and the update is the joint step on
cat(x_new, x_mem) of MB-DFKD (tests/test_released_update.py). It is built as that joint step,
without the inner step whose result is discarded.

In a distributed run the gradients are averaged over the ranks between the pure step and the
optimiser (``average_grads``), so every rank applies the same update to the same weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from fastlrwa.config.schema import LRWAConfig
from fastlrwa.updates.student_steps import install_grads, make_student_step

# The names under which the step's aux values are logged.
AUX_NAMES = {"loss": "loss_student", "loss_acq": "loss_acq", "loss_ret": "loss_ret", "grad_cos": "grad_cos"}


class StudentUpdate:
    def __init__(self, student: nn.Module, kind: str, optimizer: torch.optim.Optimizer, *, lrwa: LRWAConfig,
                 joint_objective: str, autocast_dtype: torch.dtype | None, scaler: torch.amp.GradScaler,
                 compile: bool, average_grads: Callable[[Sequence[torch.Tensor]], None] | None = None) -> None:
        """``average_grads``: replaces each gradient by its mean over the ranks, in place (None: one process)."""
        self.average_grads = average_grads
        self.params = dict(student.named_parameters())
        self.buffers = dict(student.named_buffers())
        self.optimizer = optimizer
        self.scaler = scaler
        self._ones = torch.ones((), device=next(student.parameters()).device)
        common = {"amp_dtype": autocast_dtype, "compile": compile}
        self.plain = make_student_step("plain", student, **common)
        if kind == "plain":
            self.with_replay = None
        elif kind == "joint" or lrwa.objective == "released":
            objective = "official" if kind == "lrwa" else joint_objective
            self.with_replay = make_student_step("joint", student, objective=objective, **common)
        else:
            self.with_replay = make_student_step(
                "lrwa", student, objective=lrwa.objective, alpha=lrwa.alpha, weight_decay=lrwa.weight_decay,
                hvp=lrwa.hvp, exact_method=lrwa.exact_method, log_alignment=lrwa.log_alignment, **common,
            )

    def step(self, x_new: torch.Tensor, t_new: torch.Tensor, x_mem: torch.Tensor | None,
             t_mem: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """One student update; returns its losses (0-dim device tensors) under their logged names."""
        loss_scale = self.scaler.scale(self._ones) if self.scaler.is_enabled() else None
        if x_mem is None or self.with_replay is None:
            grads, aux = self.plain(self.params, self.buffers, x_new, t_new, loss_scale=loss_scale)
        else:
            grads, aux = self.with_replay(self.params, self.buffers, x_new, t_new, x_mem, t_mem, loss_scale=loss_scale)
        if self.average_grads is not None:
            self.average_grads(list(grads.values()))
        install_grads(self.params, grads)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {AUX_NAMES[key]: value for key, value in aux.items() if key in AUX_NAMES}
