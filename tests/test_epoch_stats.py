"""EpochStats: per-name epoch means, the first non-finite watched value with its step, and two ops a step."""

from __future__ import annotations

import io
import math
import random

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastlrwa.trainer.epoch_stats import EpochStats

WATCHED = ("loss_student", "loss_generator")


class CountOps(TorchDispatchMode):
    """The aten operations dispatched inside the block that compute (on a GPU, each a kernel launch); views
    of a tensor compute nothing and are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _steps(seed: int, count: int) -> list[dict[str, float]]:
    """A random interleaving of the trainer's step kinds: generator steps, plain and probed student steps."""
    rng = random.Random(seed)
    kinds = [
        ("loss_generator", "gen_js", "gen_oh"),
        ("loss_student", "loss_acq"),
        ("loss_student", "loss_acq", "loss_ret", "grad_cos"),
    ]
    return [{name: rng.uniform(-3.0, 3.0) for name in rng.choice(kinds)} for _ in range(count)]


def _add_all(stats: EpochStats, steps: list[dict[str, float]], dtype: torch.dtype = torch.float32) -> None:
    for step in steps:
        stats.add({name: torch.tensor(value, dtype=dtype) for name, value in step.items()})


@pytest.mark.parametrize("count", [1, 7, 150])  # 150 rows outgrow the first table allocation of 64
def test_means_are_per_name_means_over_the_steps_that_logged_the_name(count):
    steps = _steps(seed=count, count=count)
    stats = EpochStats(torch.device("cpu"), WATCHED)
    _add_all(stats, steps, dtype=torch.float64)
    expected: dict[str, list[float]] = {}
    for step in steps:
        for name, value in step.items():
            expected.setdefault(name, []).append(float(torch.tensor(value, dtype=torch.float32)))
    means = stats.means()
    assert means.keys() == expected.keys()
    for name, values in expected.items():
        assert means[name] == pytest.approx(math.fsum(values) / len(values), rel=1e-5, abs=1e-6)
    assert stats.live() == means and stats.step == count


def test_reset_starts_a_new_epoch_but_keeps_counting_steps():
    stats = EpochStats(torch.device("cpu"), WATCHED)
    _add_all(stats, _steps(seed=3, count=9))
    stats.reset()
    assert stats.means() == {} and stats.first_non_finite() is None
    stats.add({"loss_student": torch.tensor(2.5)})
    assert stats.means() == {"loss_student": 2.5} and stats.step == 10


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_first_non_finite_watched_value_is_found_with_its_step(bad):
    steps = _steps(seed=11, count=40)
    stats = EpochStats(torch.device("cpu"), WATCHED)
    _add_all(stats, steps[:17])
    stats.add({"grad_cos": torch.tensor(float("nan")), "loss_student": torch.tensor(1.0)})  # grad_cos: not watched
    assert stats.first_non_finite() is None
    stats.add({"loss_generator": torch.tensor(bad), "gen_js": torch.tensor(0.5)})  # step 19
    _add_all(stats, steps[17:25])
    stats.add({"loss_student": torch.tensor(float("nan")), "loss_acq": torch.tensor(1.0)})  # step 28: later
    step, name, value = stats.first_non_finite()
    assert (step, name) == (19, "loss_generator")
    assert value == bad or (math.isnan(bad) and math.isnan(value))


def test_state_dict_round_trip_continues_the_same_sums(tmp_path):
    steps = _steps(seed=5, count=90)
    whole = EpochStats(torch.device("cpu"), WATCHED)
    _add_all(whole, steps)
    first = EpochStats(torch.device("cpu"), WATCHED)
    _add_all(first, steps[:41])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = EpochStats(torch.device("cpu"), WATCHED)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    _add_all(second, steps[41:])
    assert second.means() == whole.means() and second.step == whole.step


def test_a_step_costs_two_operations_whatever_it_logs():
    """One stack and one copy into the table: not a few small operations per logged value."""
    stats = EpochStats(torch.device("cpu"), WATCHED)
    values = {
        name: torch.tensor(float(i))
        for i, name in enumerate(
            ["loss_student", "loss_acq", "loss_ret", "grad_cos", "gen_js", "gen_oh", "loss_generator"]
        )
    }
    stats.add(values)  # the first add of a set of names allocates its table
    with CountOps() as counter:
        stats.add(values)
    assert len(counter.ops) <= 2, counter.ops
