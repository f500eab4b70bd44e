"""The batch a student step trains on: fresh latents through the generator, and the teacher's logits on it.

One function of the latents, compiled once with the student step when the run compiles, so that the
two forwards that feed every student step run as one graph instead of op by op in the loop. No
gradient flows: the student update is a function of the batch alone. Both forwards run under the
run's autocast and come back in at least float32, because the student's inner step and Hessian-vector
product run outside autocast. The generator stays in train mode, as in the authors' loop: its
BatchNorm layers normalise with the batch statistics and move their running statistics, and its
spectral norms take a power-iteration step.

Under CUDA graphs (``cuda_graphs``) the graph's outputs live in memory that the next replay
overwrites, and the memory bank keeps the last student batch of an epoch by reference: the batch is
copied out of the graph's memory before it is returned.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from fastlrwa.runtime import at_least_float32, autocast_to, compiled

StudentBatch = Callable[[Tensor], tuple[Tensor, Tensor]]


def make_student_batch(
    generator: nn.Module,
    teacher: nn.Module,
    *,
    autocast_dtype: torch.dtype | None,
    compile: bool,
    cuda_graphs: bool = False,
) -> StudentBatch:
    """``batch(z) -> (images, teacher logits)`` for latents ``z``; compiled (fullgraph) when ``compile``."""
    device_type = next(generator.parameters()).device.type

    def batch(z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad(), autocast_to(device_type, autocast_dtype):
            images = at_least_float32(generator(z))
            teacher_logits = at_least_float32(teacher(images))
        return images, teacher_logits

    if not compile:
        return batch
    if not cuda_graphs:
        return compiled(batch, fullgraph=True, dynamic=False)
    graph = compiled(batch, fullgraph=True, dynamic=False, mode="reduce-overhead")
    # The generator's running statistics and power-iteration vectors are updated in place by every call:
    # static addresses keep those updates inside the graph instead of disabling it.
    for buffer in [*generator.buffers(), *teacher.buffers()]:
        torch._dynamo.mark_static_address(buffer)

    def batch_out_of_graph(z: Tensor) -> tuple[Tensor, Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        images, teacher_logits = graph(z)
        return images.clone(), teacher_logits.clone()

    return batch_out_of_graph
