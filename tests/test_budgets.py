"""The deterministic cost budgets of benchmarks/budgets.json, and the benchmark's own measuring tools.

FLOPs (``FlopCounterMode``) and the peak of live tensor bytes are counted on the ``meta`` device at
the benchmark's sizes: nothing is computed, and the figures are the same on every machine.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import load_benchmark
from fastlrwa.updates.options import LRWAOptions

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("bench_lrwa_step")
BUDGETS = json.loads((ROOT / "benchmarks" / "budgets.json").read_text())
OBJECTIVES = ("paper", "official")
DEFAULT_EXACT = next(
    name for name, (hvp, method) in bench.LRWA_MODES.items() if hvp == "exact" and method == LRWAOptions().exact_method
)


def _deterministic(size: str, objective: str) -> dict[str, dict[str, float]]:
    return BUDGETS["sizes"][size][objective]["deterministic"]


@pytest.fixture(scope="module")
def counts():
    """(FLOPs, live bytes) of every budgeted variant and the joint baseline, per size and objective, on demand."""
    cache: dict[tuple[str, str, str], tuple[int, int]] = {}

    def count(size: str, objective: str, name: str) -> tuple[int, int]:
        key = (size, objective, name)
        if key not in cache:
            cache[key] = bench.update_counts(name, bench.SIZES[size], objective)
        return cache[key]

    return count


@pytest.mark.parametrize("size", sorted(BUDGETS["sizes"]))
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("figure,index", [("flops_ratio", 0), ("live_memory_ratio", 1)])
def test_lrwa_costs_stay_within_budget(counts, size, objective, figure, index):
    baseline = counts(size, objective, bench.BASELINE)[index]
    ratios = {name: counts(size, objective, name)[index] / baseline for name in _deterministic(size, objective)[figure]}
    over = {
        name: round(ratio, 3) for name, ratio in ratios.items() if ratio > _deterministic(size, objective)[figure][name]
    }
    assert not over, f"{figure} over budget ({size} size, {objective}): {over}"


def test_budget_structure_covers_every_lrwa_mode():
    for objective in OBJECTIVES:
        for figure in ("flops_ratio", "live_memory_ratio"):
            assert set(_deterministic("small", objective)[figure]) == set(bench.LRWA_MODES)
            assert DEFAULT_EXACT in _deterministic("paper", objective)[figure]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_default_exact_method_has_the_fewest_flops_and_live_bytes(counts, objective):
    """The rule the default follows (BENCHMARKS.md), checked where all exact methods are counted."""
    exact = [name for name, (hvp, _) in bench.LRWA_MODES.items() if hvp == "exact"]
    for index in (0, 1):
        cheapest = min(counts("small", objective, name)[index] for name in exact)
        assert counts("small", objective, DEFAULT_EXACT)[index] == cheapest


def test_live_tensor_bytes_follows_allocations_and_frees():
    with bench.LiveTensorBytes() as tracker:
        a = torch.ones(1000, dtype=torch.float32)  # 4000 bytes
        b = a * 3.0  # 8000 live
        view = b[10:20]  # a view allocates nothing
        del a  # 4000 live
        c = torch.ones(250, dtype=torch.float64)  # 6000 live
        b.add_(1.0)  # in place: nothing new
    assert tracker.peak == 8000
    assert tracker.current == 6000
    assert view.shape == (10,) and c.numel() == 250


def test_budget_breaches_names_variant_figure_and_limit():
    result = {
        "size": "small",
        "objective": "paper",
        "device_type": "cpu",
        "rows": [
            {"variant": "lrwa-fd", "flops_ratio": 2.5, "live_memory_ratio": 1.0},
            {"variant": "lrwa-exact", "flops_ratio": 3.0, "live_memory_ratio": 1.0, "time_ratio": 99.0},
        ],
    }
    limit = _deterministic("small", "paper")["flops_ratio"]["lrwa-fd"]
    assert bench.budget_breaches(result, BUDGETS) == [f"lrwa-fd: flops_ratio 2.50 > budget {limit} (deterministic)"]
    result["device_type"] = "cuda"
    assert any(line.startswith("lrwa-exact: time_ratio 99.00") for line in bench.budget_breaches(result, BUDGETS))


def test_budget_breaches_apply_the_budgets_of_the_results_size():
    rows = [{"variant": "lrwa-fd", "flops_ratio": 2.5}, {"variant": DEFAULT_EXACT, "flops_ratio": 3.0}]
    result = {"size": "paper", "objective": "paper", "device_type": "cpu", "rows": rows}
    limit = _deterministic("paper", "paper")["flops_ratio"][DEFAULT_EXACT]
    assert bench.budget_breaches(result, BUDGETS) == [
        f"{DEFAULT_EXACT}: flops_ratio 3.00 > budget {limit} (deterministic)"
    ]
    assert bench.budget_breaches(result | {"size": "unbudgeted"}, BUDGETS) == []


def test_benchmark_reproduces_the_authors_gradient():
    """The ``higher`` variant the benchmark times computes the same update as fastlrwa's official exact."""
    pytest.importorskip("higher")
    from fastlrwa.updates.lrwa import lrwa_grads
    from fastlrwa.updates.options import LRWAOptions

    torch.manual_seed(13)
    student = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 6),
    ).double()
    teacher = copy.deepcopy(student).eval()
    x_new, x_mem = torch.randn(7, 3, 5, 5, dtype=torch.float64), torch.randn(3, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        problem = bench.Problem(student, teacher, x_new, torch.randn(7, 6, dtype=torch.float64), x_mem, teacher(x_mem))
    variant = bench.make_variant("higher", problem, "official")
    variant.update()
    authors = torch.cat([p.grad.flatten() for p in variant.optimizer.param_groups[0]["params"]])

    params = {name: p.detach() for name, p in student.named_parameters()}
    grads, _ = lrwa_grads(
        student,
        params,
        dict(copy.deepcopy(student).named_buffers()),
        problem.x_new,
        problem.t_new,
        problem.x_mem,
        problem.t_mem,
        options=LRWAOptions(
            alpha=bench.ALPHA,
            weight_decay=bench.WEIGHT_DECAY,
            objective="official",
            hvp="exact",
            exact_method="forward",
        ),
    )
    ours = torch.cat([grads[name].flatten() for name in params])
    assert float((ours - authors).norm() / authors.norm()) <= 1e-10
