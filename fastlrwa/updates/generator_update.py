"""The generator update: one step of the method's generator objective on a fresh latent batch.

The forward and loss (generator -> teacher -> student -> objective) is one function, compiled once
when asked; the backward reaches only the generator's parameters (``backward(inputs=...)``), so no
gradient is accumulated into the frozen teacher or into the student, whose own update follows.
In a distributed run ``generator`` is the generator wrapped in DistributedDataParallel, which
averages its gradients over the ranks during that backward.

Every ``grad_norm_every``-th step of an epoch also measures how hard each term of the objective pulls
on the generator: the norm of the gradient of each weighted term, one more backward per term through
the step's own graph (kept for it), before the step's backward. No forward is repeated, so nothing
the training computes changes: the generator's BatchNorm statistics and spectral-norm vectors move
once per step as always. In a distributed run the norms are this rank's own (not averaged).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from fastlrwa.losses.generator_objectives import generator_loss, weighted_terms
from fastlrwa.losses.options import GeneratorLossOptions, GeneratorObjective
from fastlrwa.losses.priors import BatchNormStatistics
from fastlrwa.runtime import at_least_float32, autocast_to, compiled


class GeneratedBatch(NamedTuple):
    """What a generator step hands on: its batch (detached), the teacher's and the student's logits on it
    (at least float32, detached; the student's None where the objective does not run the student), and
    the values to log (0-dim device tensors)."""

    images: torch.Tensor
    teacher_logits: torch.Tensor
    student_logits: torch.Tensor | None
    logged: dict[str, torch.Tensor]


def term_grad_norms(
    terms: dict[str, torch.Tensor], parameters: list[torch.Tensor], scale: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``‖∂term/∂parameters‖`` of each term (0-dim tensors); the graph is kept for the step's own backward.

    ``scale``: the fp16 loss scale, applied before each backward (so small gradients do not underflow)
    and divided out of the norm.
    """
    norms = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(
            term if scale is None else term * scale,
            parameters,
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        norms[name] = norm if scale is None else norm / scale
    return norms


class GeneratorUpdate:
    def __init__(
        self,
        generator: nn.Module,
        teacher: nn.Module,
        student: nn.Module,
        *,
        objective: GeneratorObjective,
        weights: GeneratorLossOptions,
        optimizer: torch.optim.Optimizer,
        autocast_dtype: torch.dtype | None,
        scaler: torch.amp.GradScaler,
        compile: bool,
        grad_norm_every: int = 0,
    ) -> None:
        """``grad_norm_every``: measure the gradient norm of each loss term on every N-th step of an epoch
        (0: never)."""
        self.grad_norm_every = grad_norm_every
        self.generator = generator
        self.teacher = teacher
        self.student = student
        self.objective = objective
        self.weights = weights
        self.optimizer = optimizer
        self.autocast_dtype = autocast_dtype
        self.scaler = scaler
        self.device_type = next(generator.parameters()).device.type
        self.parameters = [p for p in generator.parameters() if p.requires_grad]
        self.bn_statistics = BatchNormStatistics(teacher) if objective == "dfq" else None
        forward: Callable = self._forward
        # DFQ reads BatchNorm inputs through hooks added per call, which would recompile every step.
        if compile and self.bn_statistics is None:
            forward = compiled(forward, fullgraph=False)
        self.forward = forward

    def _forward(
        self, z: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor | None]:
        with autocast_to(self.device_type, self.autocast_dtype):
            images = self.generator(z)
            if self.bn_statistics is not None:
                with self.bn_statistics.recording():
                    teacher_logits, features = self.teacher(images, return_features=True)
                bn_loss = self.bn_statistics.loss()
            else:
                teacher_logits, features = self.teacher(images, return_features=True)
                bn_loss = None
            student_logits = self.student(images) if self.objective != "dafl" else None
        _, parts = generator_loss(
            self.objective,
            at_least_float32(teacher_logits),
            None if features is None else at_least_float32(features),
            None if student_logits is None else at_least_float32(student_logits),
            self.weights,
            bn_loss,
            images,
            z,
        )
        return weighted_terms(parts, self.weights), parts, images, teacher_logits, student_logits

    def step(self, z: torch.Tensor, *, index: int = 0) -> GeneratedBatch:
        """Update the generator on latents ``z``; ``index``: the step's number in its epoch, from 0 (the
        gradient norms of the loss terms are measured where it is a multiple of ``grad_norm_every``)."""
        terms, parts, images, teacher_logits, student_logits = self.forward(z)
        loss = sum(terms.values())
        logged = {f"gen_{name}": value.detach() for name, value in parts.items()}
        logged["loss_generator"] = loss.detach()
        if self.grad_norm_every > 0 and index % self.grad_norm_every == 0:
            scale = self.scaler.scale(torch.ones((), device=loss.device)) if self.scaler.is_enabled() else None
            norms = term_grad_norms(terms, self.parameters, scale)
            logged.update({f"gen_grad_norm_{name}": norm for name, norm in norms.items()})
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward(inputs=self.parameters)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return GeneratedBatch(
            images.detach(),
            at_least_float32(teacher_logits.detach()),
            None if student_logits is None else at_least_float32(student_logits.detach()),
            logged,
        )
