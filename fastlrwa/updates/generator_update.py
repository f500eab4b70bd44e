"""The generator update: one step of the method's generator objective on a fresh latent batch.

The forward and loss (generator -> teacher -> student -> objective) is one function, compiled once
when asked; the backward reaches only the generator's parameters (``backward(inputs=...)``), so no
gradient is accumulated into the frozen teacher or into the student, whose own update follows.
In a distributed run ``generator`` is the generator wrapped in DistributedDataParallel, which
averages its gradients over the ranks during that backward.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from fastlrwa.losses.generator_objectives import generator_loss
from fastlrwa.losses.options import GeneratorLossOptions, GeneratorObjective
from fastlrwa.losses.priors import BatchNormStatistics
from fastlrwa.runtime import at_least_float32, autocast_to, compiled


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
    ) -> None:
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

    def _forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
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
        loss, parts = generator_loss(
            self.objective, at_least_float32(teacher_logits), at_least_float32(features),
            None if student_logits is None else at_least_float32(student_logits), self.weights, bn_loss,
        )
        return loss, parts, images, teacher_logits

    def step(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Update the generator; returns the batch it generated (detached), the teacher's logits on it, and the losses."""
        loss, parts, images, teacher_logits = self.forward(z)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward(inputs=self.parameters)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        logged = {f"gen_{name}": value.detach() for name, value in parts.items()}
        logged["loss_generator"] = loss.detach()
        return images.detach(), at_least_float32(teacher_logits.detach()), logged
