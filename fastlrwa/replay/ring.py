"""A preallocated ring of replay slots, each holding generated images with their teacher logits.

The teacher is frozen, so its logits on a stored sample never change: they are stored with the
sample instead of being recomputed at every replay. Storage lives on the training device unless
it exceeds the device budget, in which case it lives in pinned host memory and batches reach the
device through :class:`~fastlrwa.replay.prefetch.HostPrefetcher`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.replay.prefetch import HostPrefetcher
from fastlrwa.replay.rng import canonical_device, rng_on


def ring_storage_bytes(
    slots: int, slot_size: int, image_shape: tuple[int, int, int], num_classes: int, dtype: torch.dtype
) -> int:
    """Bytes taken by a ring's images (in ``dtype``) and teacher logits (see :func:`logits_dtype`)."""
    samples = slots * slot_size
    image_bytes = samples * math.prod(image_shape) * torch.empty((), dtype=dtype).element_size()
    logit_bytes = samples * num_classes * torch.empty((), dtype=logits_dtype(dtype)).element_size()
    return image_bytes + logit_bytes


def logits_dtype(image_dtype: torch.dtype) -> torch.dtype:
    """Teacher logits are stored in float32 at least, also beside bf16 images."""
    return torch.promote_types(image_dtype, torch.float32)


def uses_host_tier(storage_bytes: int, device: torch.device, device_budget_bytes: int | None) -> bool:
    """Whether a ring of ``storage_bytes`` must live in host memory instead of on ``device``.

    Only a CUDA device has a separate host tier; on the CPU the storage is host memory already.
    """
    return device.type == "cuda" and device_budget_bytes is not None and storage_bytes > device_budget_bytes


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"replay ring {name}={value!r} must be a positive integer")


class ReplayRing:
    """``slots`` slots of ``slot_size`` samples; a push fills the next slot, overwriting the oldest.

    ``filled`` and ``next_slot`` are host-side ints: pushes happen at host-known times (epoch
    ends), so reading them never synchronises with the device. Sampling returns one uniformly
    random filled slot (the authors' replay batch), drawn with ``rng``.

    Args:
        slots: number of slots (the authors' capacity: 10).
        slot_size: samples per slot (the authors': batch // 8 = 64).
        image_shape: (C, H, W) of a generated image.
        num_classes: K, the teacher's number of logits.
        device: the training device.
        dtype: storage dtype of the images; teacher logits are stored in float32 (float64 beside float64 images).
        device_budget_bytes: on CUDA, storage larger than this lives in pinned host memory.
        rng: draws slot indices; one on another device than the indices is replaced by a
            random-number generator there seeded with its initial seed (see :func:`~fastlrwa.replay.rng.rng_on`).
    """

    def __init__(
        self,
        slots: int,
        slot_size: int,
        image_shape: tuple[int, int, int],
        num_classes: int,
        device: torch.device | str,
        *,
        dtype: torch.dtype = torch.float32,
        device_budget_bytes: int | None = None,
        rng: torch.Generator | None = None,
    ):
        _positive("slots", slots)
        _positive("slot_size", slot_size)
        _positive("num_classes", num_classes)
        if len(image_shape) != 3:
            raise ConfigError(f"replay ring image_shape={tuple(image_shape)} must be (channels, height, width)")
        for size in image_shape:
            _positive("image_shape entry", size)
        self.slots = slots
        self.slot_size = slot_size
        self.image_shape = tuple(int(size) for size in image_shape)
        self.num_classes = num_classes
        self.device = canonical_device(device)
        self.storage_bytes = ring_storage_bytes(slots, slot_size, self.image_shape, num_classes, dtype)
        self.host_tier = uses_host_tier(self.storage_bytes, self.device, device_budget_bytes)
        storage_device = torch.device("cpu") if self.host_tier else self.device
        # Pinned memory needs a CUDA context; for a CPU training device there is nothing to pin for.
        pin = self.host_tier and self.device.type == "cuda"
        self._images = torch.empty(
            (slots, slot_size, *self.image_shape), dtype=dtype, device=storage_device, pin_memory=pin
        )
        self._logits = torch.empty(
            (slots, slot_size, num_classes), dtype=logits_dtype(dtype), device=storage_device, pin_memory=pin
        )
        self._rng = rng_on(storage_device, rng)
        self._prefetcher = (
            HostPrefetcher(self._images, self._logits, self.device, self._rng) if self.host_tier else None
        )
        self.filled = 0
        self.next_slot = 0

    def push(self, images: Tensor, logits: Tensor) -> None:
        """Copy the first ``slot_size`` rows of a batch and its teacher logits into the next slot."""
        self._check_batch(images, logits)
        images = images[: self.slot_size].detach()
        logits = logits[: self.slot_size].detach()
        if self._prefetcher is not None:
            self._prefetcher.write_slot(self.next_slot, images, logits)
        else:
            self._images[self.next_slot].copy_(images)
            self._logits[self.next_slot].copy_(logits)
        self.next_slot = (self.next_slot + 1) % self.slots
        self.filled = min(self.filled + 1, self.slots)

    def sample(self) -> tuple[Tensor, Tensor]:
        """One uniformly random filled slot: (images [slot_size, C, H, W], logits [slot_size, K]).

        Images come in the storage dtype, logits in :func:`logits_dtype`, both on the training device.

        The slot index is drawn on the storage's device and gathered there: no host sync. In the
        host tier the batch comes from a device staging buffer that the next call refills, so
        consume it before sampling again.
        """
        if self.filled == 0:
            raise RuntimeError("the replay ring is empty: call sample() only once a slot has been pushed")
        if self._prefetcher is not None:
            return self._prefetcher.take(self.filled)
        slot = torch.randint(self.filled, (1,), device=self._images.device, generator=self._rng)
        return self._images.index_select(0, slot)[0], self._logits.index_select(0, slot)[0]

    def state_dict(self) -> dict:
        """Filled slots, counters and sampling state, all on the CPU and ``weights_only``-loadable."""
        if self._prefetcher is not None:
            self._prefetcher.quiesce()
        return {
            "slots": self.slots,
            "slot_size": self.slot_size,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "host_tier": self.host_tier,
            "filled": self.filled,
            "next_slot": self.next_slot,
            "images": self._images[: self.filled].to("cpu", copy=True),
            "logits": self._logits[: self.filled].to("cpu", copy=True),
            "rng": self._rng.get_state(),
            "pending_slot": -1 if self._prefetcher is None else self._prefetcher.pending_slot,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore contents, counters and sampling state saved by :meth:`state_dict`."""
        self._check_state(state)
        filled = state["filled"]
        if self._prefetcher is not None:
            self._prefetcher.quiesce()
        self._images[:filled].copy_(state["images"])
        self._logits[:filled].copy_(state["logits"])
        # A checkpoint loaded with map_location puts this byte tensor on the device; set_state wants it on the CPU.
        self._rng.set_state(state["rng"].cpu())
        self.filled = filled
        self.next_slot = state["next_slot"]
        if self._prefetcher is not None:
            self._prefetcher.restore_pending(state["pending_slot"])

    def _check_batch(self, images: Tensor, logits: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"the replay ring stores images of shape (C, H, W)={self.image_shape} but was pushed a batch of shape "
                f"{tuple(images.shape)}; build the ring with the generator's output shape"
            )
        if tuple(logits.shape) != (images.shape[0], self.num_classes):
            raise ConfigError(
                f"the replay ring expects teacher logits of shape ({images.shape[0]}, {self.num_classes}) for this "
                f"batch, got {tuple(logits.shape)}; build the ring with the teacher's number of classes"
            )
        if images.shape[0] < self.slot_size:
            raise ConfigError(
                f"replay slot_size={self.slot_size} is larger than the pushed batch of {images.shape[0]} samples; "
                "lower the slot size (--memory-slot-size) or raise the batch size"
            )

    def _check_state(self, state: dict) -> None:
        expected = {
            "slots": self.slots,
            "slot_size": self.slot_size,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "host_tier": self.host_tier,
        }
        missing = sorted({*expected, "filled", "next_slot", "images", "logits", "rng", "pending_slot"} - set(state))
        if missing:
            raise CheckpointError(
                f"the replay ring state lacks {', '.join(missing)}; resume from a checkpoint fastlrwa wrote"
            )
        found = {key: state[key] for key in expected}
        if found != expected:
            raise CheckpointError(
                f"the checkpoint's replay ring {found} does not match this run's {expected}; resume with the same "
                "memory settings (slots, slot size, memory budget), dataset and device"
            )
        filled, next_slot, pending = state["filled"], state["next_slot"], state["pending_slot"]
        if (
            not 0 <= filled <= self.slots
            or not 0 <= next_slot < self.slots
            or not (pending == -1 or 0 <= pending < filled)
        ):
            raise CheckpointError(
                f"the checkpoint's replay ring counters (filled={filled}, next_slot={next_slot}, "
                f"pending_slot={pending}) are inconsistent; the checkpoint is corrupt"
            )
        if not all(isinstance(state[key], Tensor) for key in ("images", "logits", "rng")):
            raise CheckpointError("the checkpoint's replay ring contents are not tensors; the checkpoint is corrupt")
        shapes = (tuple(state["images"].shape), tuple(state["logits"].shape))
        wanted = ((filled, self.slot_size, *self.image_shape), (filled, self.slot_size, self.num_classes))
        if shapes != wanted:
            raise CheckpointError(
                f"the checkpoint's replay ring holds tensors of shapes {shapes}, expected {wanted}; "
                "the checkpoint is corrupt"
            )
        if state["rng"].shape != self._rng.get_state().shape:
            raise CheckpointError(
                "the checkpoint's replay sampling state was saved on another kind of device; resume on the same device"
            )
