"""The one interface through which the trainer uses any replay memory."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class ReplayScheme(Protocol):
    """A source of knowledge-retention batches (the memory M of the paper, eq. 5).

    Every method is called from the training loop, so none may synchronise the host with the
    device: decisions are taken on host-side counters, tensors stay on the device.
    """

    def is_ready(self) -> bool:
        """Whether there is anything to replay yet (decided host-side, no sync)."""
        ...

    def sample(self) -> tuple[Tensor, Tensor]:
        """A replay batch: (images [B, C, H, W], teacher logits [B, K]) on the training device, no grad."""
        ...

    def observe_generator_batch(self, images: Tensor, teacher_logits: Tensor) -> dict[str, Tensor]:
        """Take in the batch of a generator step (detached) and the teacher's logits on it.

        Returns 0-dim device tensors to log; never converts them to Python numbers.
        """
        ...

    def observe_student_batch(self, images: Tensor, teacher_logits: Tensor) -> None:
        """Take in the fresh batch a student step just trained on (detached) and the teacher's logits on it."""
        ...

    def end_epoch(self, epoch: int) -> None:
        """Called once after each epoch; ``epoch`` counts from 1."""
        ...

    def state_dict(self) -> dict:
        """Everything needed for an exact resume, loadable with ``torch.load(weights_only=True)``."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; raises CheckpointError when the state does not fit."""
        ...
