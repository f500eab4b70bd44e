"""MB-DFKD's replay: every few epochs a slice of the last batch the student trained on goes into a ring."""

from __future__ import annotations

from torch import Tensor

from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.replay.ring import ReplayRing


class MemoryBankReplay:
    """The memory-bank replay scheme (MB-DFKD, Ours-1) over a :class:`ReplayRing`.

    The authors' schedule: at the end of every epoch with ``epoch % 5 == 0``, epochs counted from 0
    (so the first push follows the first epoch, then every ``push_every`` = 5), the first
    ``slot_size`` = 64 (batch // 8) samples of the last batch a student step trained on are pushed
    into a 10-slot ring; a replay batch is one random slot.

    ``observe_student_batch`` only keeps a reference to the batch, no copy per step. That is safe
    because the generator's forward returns a new tensor every step and nothing writes into it
    afterwards, so the referenced batch still holds exactly the samples of that step when an epoch
    ends. The cost is that one generated batch stays alive between steps.
    """

    def __init__(self, ring: ReplayRing, *, push_every: int = 5):
        if not isinstance(push_every, int) or push_every < 1:
            raise ConfigError(f"memory bank push_every={push_every!r} must be a positive number of epochs")
        self.ring = ring
        self.push_every = push_every
        self._latest: tuple[Tensor, Tensor] | None = None

    def is_ready(self) -> bool:
        """True once a slot has been pushed."""
        return self.ring.filled > 0

    def sample(self) -> tuple[Tensor, Tensor]:
        """One random filled slot: (images [slot_size, C, H, W], teacher logits [slot_size, K])."""
        return self.ring.sample()

    def observe_generator_batch(self, images: Tensor, teacher_logits: Tensor) -> dict[str, Tensor]:
        """The generator's own batches are not stored; nothing to log."""
        return {}

    def observe_student_batch(self, images: Tensor, teacher_logits: Tensor) -> None:
        """Remember the batch a student step just trained on, by reference."""
        # detach() so a caller that forgot to detach does not keep the generator's graph alive.
        self._latest = (images.detach(), teacher_logits.detach())

    def end_epoch(self, epoch: int) -> None:
        """Push the latest student batch after epochs 1, 1 + ``push_every``, 1 + 2 ``push_every``, ...
        (``epoch`` counts from 1, the authors' from 0)."""
        if (epoch - 1) % self.push_every == 0 and self._latest is not None:
            self.ring.push(*self._latest)

    def state_dict(self) -> dict:
        """The ring and, when one was observed, the first ``slot_size`` rows of the latest batch.

        Keeping the latest rows makes a resume exact even from a checkpoint taken between the
        epoch's last generator step and its push.
        """
        state: dict = {"ring": self.ring.state_dict(), "push_every": self.push_every}
        if self._latest is not None:
            images, logits = self._latest
            state["latest_images"] = images[: self.ring.slot_size].to("cpu", copy=True)
            state["latest_logits"] = logits[: self.ring.slot_size].to("cpu", copy=True)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the ring and the latest batch saved by :meth:`state_dict`."""
        if "ring" not in state or state.get("push_every") != self.push_every:
            raise CheckpointError(
                f"the checkpoint's memory bank (push_every={state.get('push_every')}) does not match this run's "
                f"push_every={self.push_every}; resume with the same --memory-push-every"
            )
        self.ring.load_state_dict(state["ring"])
        self._latest = None
        if "latest_images" in state:
            device = self.ring.device
            self._latest = (state["latest_images"].to(device), state["latest_logits"].to(device))
