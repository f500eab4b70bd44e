"""Applying a student update: the compiled pure gradient function, then a fused SGD step.

Until the replay scheme has something to replay (the memory bank fills on its schedule, the VAE
after its warm-up), the replay methods update with the plain acquisition step, as the authors do.
An LRWA update runs its alignment probe on every ``align_every``-th step of an epoch (``LRWAOptions``):
that step's gradient function is built with the probe, the others without it, so no step pays for a
probe it does not log.

In a distributed run the gradients are averaged over the ranks between the pure step and the
optimiser (``average_grads``), so every rank applies the same update to the same weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from fastlrwa.updates.options import JointOptions, KDOptions, LRWAOptions, StudentUpdateKind
from fastlrwa.updates.student_grads import install_grads, make_student_grads

# The names under which the step's aux values are logged.
AUX_NAMES = {"loss": "loss_student", "loss_acq": "loss_acq", "loss_ret": "loss_ret", "grad_cos": "grad_cos"}


class StudentUpdate:
    def __init__(
        self,
        student: nn.Module,
        kind: StudentUpdateKind,
        optimizer: torch.optim.Optimizer,
        *,
        lrwa: LRWAOptions,
        joint: JointOptions,
        kd: KDOptions = KDOptions(),
        autocast_dtype: torch.dtype | None,
        scaler: torch.amp.GradScaler,
        compile: bool,
        cuda_graphs: bool = False,
        average_grads: Callable[[Sequence[torch.Tensor]], None] | None = None,
    ) -> None:
        """``scaler``: the student's loss scaler (fp16); ``cuda_graphs``: replay the compiled steps as CUDA
        graphs; ``average_grads``: replaces each gradient by its mean over the ranks, in place (None: one
        process)."""
        self.average_grads = average_grads
        self.params = dict(student.named_parameters())
        self.buffers = dict(student.named_buffers())
        self.optimizer = optimizer
        self.scaler = scaler
        self._ones = torch.ones((), device=next(student.parameters()).device)
        common = {"amp_dtype": autocast_dtype, "compile": compile, "cuda_graphs": cuda_graphs}
        # The update without replay: ZSKD's KD, the MAE acquisition step of every other method.
        self.plain = make_student_grads("kd" if kind == "kd" else "plain", student, kd=kd, **common)
        self.with_replay = (
            None if kind in ("plain", "kd") else make_student_grads(kind, student, lrwa=lrwa, joint=joint, **common)
        )
        # Built lazily by torch.compile, so an update whose probe never runs never compiles it.
        probes = kind == "lrwa" and lrwa.objective != "released" and lrwa.align_every > 0
        self.with_probe = make_student_grads(kind, student, lrwa=lrwa, align=True, **common) if probes else None
        self.align_every = lrwa.align_every

    def step(
        self,
        x_new: torch.Tensor,
        t_new: torch.Tensor,
        x_mem: torch.Tensor | None,
        t_mem: torch.Tensor | None,
        *,
        index: int = 0,
    ) -> dict[str, torch.Tensor]:
        """One student update; returns its losses (0-dim device tensors) under their logged names.

        ``index``: the step's number in its epoch, from 0; the alignment probe runs where it is a multiple
        of ``align_every``.
        """
        loss_scale = self.scaler.scale(self._ones) if self.scaler.is_enabled() else None
        if x_mem is None or self.with_replay is None:
            grads, aux = self.plain(self.params, self.buffers, x_new, t_new, loss_scale=loss_scale)
        else:
            probe = self.with_probe is not None and index % self.align_every == 0
            grads_fn = self.with_probe if probe else self.with_replay
            grads, aux = grads_fn(self.params, self.buffers, x_new, t_new, x_mem, t_mem, loss_scale=loss_scale)
        if self.average_grads is not None:
            self.average_grads(list(grads.values()))
        install_grads(self.params, grads)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {AUX_NAMES[key]: value for key, value in aux.items()}
