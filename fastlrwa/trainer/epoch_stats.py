"""Per-epoch running sums of 0-dim device tensors, read back without stalling the step loop.

Every step adds its losses on the device. The host reads them (a) once at the end of the epoch
and (b) for the live progress bar through a non-blocking copy into pinned memory whose values are
used once the copy has landed, so the bar lags by a few steps instead of syncing the device.
The first non-finite value of a watched loss is remembered on the device with the step counter,
so a NaN can be reported with its step without checking every step on the host.
"""

from __future__ import annotations

import math

import torch


class EpochStats:
    def __init__(self, device: torch.device, watched: tuple[str, ...]) -> None:
        self.device = device
        self.watched = watched
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._step = torch.zeros((), dtype=torch.int64, device=device)
        self._bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self._bad_value = torch.zeros((), dtype=torch.float32, device=device)
        self._bad_name = torch.full((), -1, dtype=torch.int64, device=device)
        self._snapshot: tuple[list[str], list[int], torch.Tensor, torch.cuda.Event] | None = None
        self._latest: dict[str, float] = {}

    def reset(self) -> None:
        self._sums = {}
        self._counts = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """Accumulate one step's values and advance the device step counter."""
        self._step += 1
        for name, value in values.items():
            value = value.detach().float()
            if name in self._sums:
                self._sums[name] += value
                self._counts[name] += 1
            else:
                self._sums[name] = value.clone()
                self._counts[name] = 1
            if name in self.watched:
                first = (~torch.isfinite(value)) & (self._bad_step < 0)
                self._bad_step = torch.where(first, self._step, self._bad_step)
                self._bad_value = torch.where(first, value, self._bad_value)
                self._bad_name = torch.where(first, torch.full_like(self._bad_name, self.watched.index(name)),
                                             self._bad_name)

    def means(self) -> dict[str, float]:
        """Epoch means (one device-to-host read)."""
        if not self._sums:
            return {}
        names = list(self._sums)
        totals = torch.stack([self._sums[n] for n in names]).tolist()
        return {n: total / self._counts[n] for n, total in zip(names, totals)}

    def first_non_finite(self) -> tuple[int, str, float] | None:
        """(global step counted from 1, loss name, value) of the first NaN/Inf watched loss, or None."""
        step, value, name = torch.stack([self._bad_step.double(), self._bad_value.double(),
                                         self._bad_name.double()]).tolist()
        if step < 0:
            return None
        return int(step), self.watched[int(name)], value

    def live(self) -> dict[str, float]:
        """The most recent means the host can see without waiting for the device."""
        if self.device.type != "cuda":
            return self.means()
        if self._snapshot is not None:
            names, counts, host, event = self._snapshot
            if event.query():
                self._latest = {n: v / c for n, c, v in zip(names, counts, host.tolist())}
                self._snapshot = None
        if self._snapshot is None and self._sums:
            names = list(self._sums)
            host = torch.empty(len(names), dtype=torch.float32, pin_memory=True)
            host.copy_(torch.stack([self._sums[n] for n in names]), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._snapshot = (names, [self._counts[n] for n in names], host, event)
        return self._latest

    def state_dict(self) -> dict:
        return {"sums": {n: v.cpu() for n, v in self._sums.items()}, "counts": dict(self._counts),
                "step": self._step.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self._sums = {n: v.to(self.device) for n, v in state["sums"].items()}
        self._counts = dict(state["counts"])
        self._step = state["step"].to(self.device)


def format_live(values: dict[str, float], keys: tuple[str, ...]) -> str:
    parts = [f"{k} {values[k]:.4f}" for k in keys if k in values and math.isfinite(values[k])]
    return "  ".join(parts)
