"""The values every step logs, kept on the device for an epoch and read back without stalling the step loop.

A step's values (0-dim device tensors) are stacked into one row of a table kept for that set of
names, on the device: two kernel launches per step however many values it logs. The host reads the
tables (a) once at the end of the epoch, as per-name means, and (b) for the live progress bar through
a non-blocking copy into pinned memory whose values are used once the copy has landed, so the bar
lags by a few steps instead of syncing the device. The rows also say at which step a watched loss
first went non-finite, so a NaN is reported with its step without a check on the host every step.
Counters (``count``: e.g. the teacher's predicted classes on generated batches) are device vectors
summed over the epoch, read at its end with the means.
"""

from __future__ import annotations

import math

import torch


class _Table:
    """The rows of the steps that logged exactly ``names``, with the global step of each row."""

    def __init__(self, names: tuple[str, ...], device: torch.device, capacity: int = 64) -> None:
        self.names = names
        self.rows = torch.empty(capacity, len(names), dtype=torch.float32, device=device)
        self.steps: list[int] = []

    def append(self, row: torch.Tensor, step: int) -> None:
        count = len(self.steps)
        if count == self.rows.shape[0]:
            grown = self.rows.new_empty(2 * count, len(self.names))
            grown[:count].copy_(self.rows)
            self.rows = grown
        self.rows[count].copy_(row)
        self.steps.append(step)

    def filled(self) -> torch.Tensor:
        return self.rows[: len(self.steps)]


class EpochStats:
    def __init__(self, device: torch.device, watched: tuple[str, ...]) -> None:
        self.device = device
        self.watched = watched
        self.step = 0  # steps added since the run started, counted from 1
        self._tables: dict[tuple[str, ...], _Table] = {}
        self._snapshot: tuple[list[str], list[int], torch.Tensor, torch.cuda.Event] | None = None
        self._latest: dict[str, float] = {}
        self._counters: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self._tables = {}
        self._counters = {}

    def count(self, name: str, bins: torch.Tensor, size: int) -> None:
        """Add one to bin ``bins[i]`` of the epoch's counter ``name`` (``size`` bins) for every i, on the device."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = torch.zeros(size, dtype=torch.float32, device=self.device)
        # Float sums of ones are exact (to 2**24 per bin), so the order of index_add_ on CUDA cannot change them.
        counter.index_add_(0, bins, torch.ones_like(bins, dtype=torch.float32))

    def counters(self) -> dict[str, torch.Tensor]:
        """The epoch's counters, as device vectors (live: read them before ``reset``)."""
        return dict(self._counters)

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """Record one step's values (0-dim tensors, any float dtype)."""
        self.step += 1
        if not values:
            return
        names = tuple(values)
        table = self._tables.get(names)
        if table is None:
            table = self._tables[names] = _Table(names, self.device)
        with torch.no_grad():  # stack promotes mixed dtypes; the row stores float32
            table.append(torch.stack(list(values.values())), self.step)

    def _totals(self) -> tuple[list[str], list[int], torch.Tensor]:
        """Column names, row counts and column sums of every table, the sums as one device vector."""
        tables = list(self._tables.values())
        names = [name for table in tables for name in table.names]
        counts = [len(table.steps) for table in tables for _ in table.names]
        return names, counts, torch.cat([table.filled().sum(dim=0) for table in tables])

    @staticmethod
    def _means(names: list[str], counts: list[int], sums: list[float]) -> dict[str, float]:
        totals: dict[str, float] = {}
        steps: dict[str, int] = {}
        for name, count, total in zip(names, counts, sums):
            totals[name] = totals.get(name, 0.0) + total
            steps[name] = steps.get(name, 0) + count
        return {name: totals[name] / steps[name] for name in totals}

    def means(self) -> dict[str, float]:
        """Epoch means (one device-to-host read)."""
        if not self._tables:
            return {}
        names, counts, sums = self._totals()
        return self._means(names, counts, sums.tolist())

    def first_non_finite(self) -> tuple[int, str, float] | None:
        """(global step counted from 1, loss name, value) of the first NaN/Inf watched loss, or None.

        One device-to-host read of the watched columns of this epoch.
        """
        columns = [
            (table, index)
            for table in self._tables.values()
            for index, name in enumerate(table.names)
            if name in self.watched
        ]
        if not columns:
            return None
        values = torch.cat([table.filled()[:, index] for table, index in columns]).tolist()
        first = None
        position = 0
        for table, index in columns:
            for step, value in zip(table.steps, values[position : position + len(table.steps)]):
                if not math.isfinite(value) and (first is None or step < first[0]):
                    first = (step, table.names[index], value)
                    break
            position += len(table.steps)
        return first

    def live(self) -> dict[str, float]:
        """The most recent means the host can see without waiting for the device."""
        if self.device.type != "cuda":
            return self.means()
        if self._snapshot is not None:
            names, counts, host, event = self._snapshot
            if event.query():
                self._latest = self._means(names, counts, host.tolist())
                self._snapshot = None
        if self._snapshot is None and self._tables:
            names, counts, sums = self._totals()
            host = torch.empty(len(names), dtype=torch.float32, pin_memory=True)
            host.copy_(sums, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._snapshot = (names, counts, host, event)
        return self._latest

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "tables": [
                {"names": list(table.names), "rows": table.filled().cpu(), "steps": list(table.steps)}
                for table in self._tables.values()
            ],
            "counters": {name: counter.cpu() for name, counter in self._counters.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self._tables = {}
        for saved in state["tables"]:
            names = tuple(saved["names"])
            table = self._tables[names] = _Table(names, self.device, capacity=max(64, len(saved["steps"])))
            table.rows[: len(saved["steps"])].copy_(saved["rows"])
            table.steps = list(saved["steps"])
        self._counters = {name: counter.to(self.device) for name, counter in state.get("counters", {}).items()}


def format_live(values: dict[str, float], keys: tuple[str, ...]) -> str:
    parts = [f"{k} {values[k]:.4f}" for k in keys if k in values and math.isfinite(values[k])]
    return "  ".join(parts)
