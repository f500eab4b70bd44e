"""Serving slots of a host-resident ring on the training device, one step ahead.

When the replay ring is too large for the device budget it lives in pinned host memory. A
synchronous host-to-device copy inside the training step would stall it, so the index of the
*next* replay batch is drawn as soon as the current one is handed out and its slot is copied on
a side CUDA stream while the current step runs. Two device staging buffers alternate: one is
being consumed by the step, the other is being filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class _Prefetch:
    slot: int
    buffer: int
    ready: torch.cuda.Event | None


class HostPrefetcher:
    """Random slots of ``host_images`` / ``host_logits`` ([slots, slot_size, ...]) delivered on ``device``.

    ``rng`` must be a CPU random-number generator: the slot index is drawn on the host, where reading it
    costs no device synchronisation. On a CPU ``device`` the copies are plain synchronous copies
    (there is nothing to overlap), which is also how the logic is tested without a GPU.

    The tensors returned by :meth:`take` are staging buffers that the next :meth:`take` refills
    (after the device work already queued on them), so a caller consumes or clones a batch before
    asking for another.
    """

    def __init__(self, host_images: Tensor, host_logits: Tensor, device: torch.device, rng: torch.Generator):
        self._host_images = host_images
        self._host_logits = host_logits
        self._device = device
        self._rng = rng
        self._staging = [
            (
                torch.empty(host_images.shape[1:], dtype=host_images.dtype, device=device),
                torch.empty(host_logits.shape[1:], dtype=host_logits.dtype, device=device),
            )
            for _ in range(2)
        ]
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if self._stream is not None:
            # The buffers are written on the side stream: if the ring is freed with a copy in
            # flight, the allocator must not hand their memory out before that copy finishes.
            for images, logits in self._staging:
                images.record_stream(self._stream)
                logits.record_stream(self._stream)
        self._pending: _Prefetch | None = None
        self._next_buffer = 0

    @property
    def pending_slot(self) -> int:
        """The slot already drawn for the next batch, or -1 when nothing is prefetched."""
        return -1 if self._pending is None else self._pending.slot

    def take(self, filled: int) -> tuple[Tensor, Tensor]:
        """Hand out the prefetched batch (drawing one now if none is pending) and prefetch the next.

        Slots are drawn uniformly from ``range(filled)``.
        """
        if self._pending is None:
            self._prefetch(self._draw(filled))
        handed_out = self._pending
        if handed_out.ready is not None:
            torch.cuda.current_stream(self._device).wait_event(handed_out.ready)
        self._prefetch(self._draw(filled))
        return self._staging[handed_out.buffer]

    def write_slot(self, slot: int, images: Tensor, logits: Tensor) -> None:
        """Overwrite one host slot, ordered against in-flight prefetches (no host sync)."""
        if self._stream is not None:
            # An in-flight prefetch may still read this host memory; the write goes after it.
            torch.cuda.current_stream(self._device).wait_stream(self._stream)
        self._host_images[slot].copy_(images, non_blocking=True)
        self._host_logits[slot].copy_(logits, non_blocking=True)
        if self._pending is not None and self._pending.slot == slot:
            # Re-read the slot so the next batch is the same whether or not a resume happens here.
            self._copy(slot, self._pending.buffer)

    def restore_pending(self, slot: int) -> None:
        """Re-issue the prefetch of ``slot`` recorded by :attr:`pending_slot` (-1: none)."""
        self._pending = None
        if slot >= 0:
            self._prefetch(slot)

    def quiesce(self) -> None:
        """Wait until every copy into or out of host memory is done, before the host touches it."""
        if self._stream is not None:
            self._stream.synchronize()
            torch.cuda.current_stream(self._device).synchronize()

    def _draw(self, filled: int) -> int:
        # A CPU random-number generator and a CPU tensor: turning it into an int reads host memory, no device sync.
        return int(torch.randint(filled, (), generator=self._rng))

    def _prefetch(self, slot: int) -> None:
        buffer = self._next_buffer
        self._next_buffer = 1 - buffer
        self._copy(slot, buffer)

    def _copy(self, slot: int, buffer: int) -> None:
        images, logits = self._staging[buffer]
        if self._stream is None:
            images.copy_(self._host_images[slot])
            logits.copy_(self._host_logits[slot])
            self._pending = _Prefetch(slot, buffer, None)
            return
        # Work already queued on the compute stream may still read this buffer (the batch handed
        # out two takes ago) or write the host slot (a push); the copy starts after both.
        self._stream.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(self._stream):
            images.copy_(self._host_images[slot], non_blocking=True)
            logits.copy_(self._host_logits[slot], non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._pending = _Prefetch(slot, buffer, ready)
