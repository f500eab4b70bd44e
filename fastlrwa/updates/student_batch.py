"""The batches the student steps train on: fresh latents through the generator, and the teacher's logits on them.

The student steps of an iteration each train on a batch of their own, and the generator does not change
between them: their ``chunks`` batches are generated in one call (``Generator.forward_chunks``: each batch
normalised with its own BatchNorm statistics, as separate forwards would be, while the convolutions and the
eval-mode teacher see them all at once; on the digits preset 15 ms against 21 ms for five separate calls).

One function of the latents, compiled once with the student step when the run compiles, so that the
two forwards that feed every student step run as one graph instead of op by op in the loop. No
gradient flows: the student update is a function of the batch alone. Both forwards run under the
run's autocast and come back in at least float32, because the student's inner step and Hessian-vector
product run outside autocast. The generator stays in train mode, as in the authors' loop: its
BatchNorm layers normalise with the batch statistics and move their running statistics, and its
spectral norms take a power-iteration step.

With augmentation (``StudentAugmentOptions``) each image is shifted, rotated and flipped at random before the
teacher sees it, ZSKD's transfer-set augmentation: the student trains on the augmented images and the teacher's
logits on them. The random maps are drawn outside the compiled graph from the run's generator, so that a resumed
run draws the same ones.

Under CUDA graphs (``cuda_graphs``) the graph's outputs live in memory that the next replay
overwrites, and the memory bank keeps the last student batch of an epoch by reference: the batch is
copied out of the graph's memory before it is returned.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from fastlrwa.data.augment import affine_warp, random_affine
from fastlrwa.runtime import at_least_float32, autocast_to, compiled
from fastlrwa.updates.options import StudentAugmentOptions

StudentBatch = Callable[[Tensor, int], tuple[Tensor, Tensor]]


def make_student_batch(
    generator: nn.Module,
    teacher: nn.Module,
    *,
    autocast_dtype: torch.dtype | None,
    compile: bool,
    cuda_graphs: bool = False,
    augment: StudentAugmentOptions | None = None,
    rng: torch.Generator | None = None,
) -> StudentBatch:
    """``batch(z, chunks) -> (images, teacher logits)`` for latents ``z`` of ``chunks`` equal row blocks, each one
    student step's batch; compiled (fullgraph) when ``compile``.

    ``augment``: the random maps applied to the generator's square ``image_size`` images, drawn from
    ``rng``; None or all off: the images as generated.
    """
    device = next(generator.parameters()).device

    def batch(z: Tensor, theta: Tensor | None = None, chunks: int = 1) -> tuple[Tensor, Tensor]:
        with torch.no_grad(), autocast_to(device.type, autocast_dtype):
            images = at_least_float32(generator(z) if chunks == 1 else generator.forward_chunks(z, chunks))
            if theta is not None:
                images = affine_warp(images, theta)
            teacher_logits = at_least_float32(teacher(images))
        return images, teacher_logits

    core = batch
    if compile:
        graphs = {"mode": "reduce-overhead"} if cuda_graphs else {}
        core = compiled(batch, fullgraph=True, dynamic=False, **graphs)
    if cuda_graphs:
        core = _out_of_graph(core, generator, teacher)
    if augment is None or not augment.enabled:
        return lambda z, chunks=1: core(z, None, chunks)
    height = width = generator.image_size

    def augmented(z: Tensor, chunks: int = 1) -> tuple[Tensor, Tensor]:
        theta = random_affine(
            z.shape[0],
            height,
            width,
            shift=augment.shift,
            rotate=augment.rotate,
            flip=augment.flip,
            device=device,
            rng=rng,
        )
        return core(z, theta, chunks)

    return augmented


def _out_of_graph(graph: StudentBatch, generator: nn.Module, teacher: nn.Module) -> StudentBatch:
    # The generator's running statistics and power-iteration vectors are updated in place by every call:
    # static addresses keep those updates inside the graph instead of disabling it.
    for buffer in [*generator.buffers(), *teacher.buffers()]:
        torch._dynamo.mark_static_address(buffer)

    def batch_out_of_graph(z: Tensor, theta: Tensor | None = None, chunks: int = 1) -> tuple[Tensor, Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        images, teacher_logits = graph(z, theta, chunks)
        return images.clone(), teacher_logits.clone()

    return batch_out_of_graph
