"""Runs cut at the same training time: the clock, the budget and the accuracies reached within it (pure).

The clock is *cumulative training time*: the sum of ``epoch_time_s`` over the epochs done, where an
epoch's time counts its iterations only (generator and student steps), not the evaluation after it,
checkpoint writes, start-up or the pause between an interruption and ``--resume``. It is what a
method costs, and it does not depend on how often the run was evaluated or stopped. (``wall_time_s``
in metrics.jsonl counts evaluation and checkpointing too.)

The budget T of a comparison is, unless given, the smallest total training time among the runs
compared, so that every run was watched at least until T and nothing is extrapolated: the fastest
run keeps all its epochs, the others keep the epochs they had finished by T (with a budget given, a
run that had finished before T keeps all its epochs). A run cut at T is the
run as if it had been stopped at T; its learning-rate schedule was planned for all its epochs, so
this is not the run one would have configured for T.

Times measured while several runs share the machine (a parallel sweep) are longer than on an idle
machine, and unevenly so: compare times from runs made under the same load.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

from fastlrwa.errors import UserFacingError
from fastlrwa.run_log.metrics_file import METRICS_FILE, RunRecord


def training_clock(record: RunRecord) -> list[float]:
    """Cumulative training seconds at the end of each logged epoch."""
    times = []
    for epoch, line in enumerate(record.metrics, start=1):
        value = line.get("epoch_time_s")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise UserFacingError(
                f"{record.path / METRICS_FILE} epoch {epoch} has no epoch_time_s (found {value!r}); the equal-time "
                f"view needs runs written by `fastlrwa train`: leave this run out or drop --equal-time"
            )
        times.append(float(value))
    return list(accumulate(times))


def default_budget(records: Sequence[RunRecord]) -> float:
    """The smallest total training time of ``records`` (seconds)."""
    return min(training_clock(record)[-1] for record in records)


def accuracies_within(record: RunRecord, budget_s: float) -> list[float]:
    """Test accuracies of the epochs the run had finished after ``budget_s`` seconds of training."""
    return [accuracy for accuracy, clock in zip(record.accuracies, training_clock(record)) if clock <= budget_s]
