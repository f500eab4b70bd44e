"""The deterministic cost budgets of benchmarks/budgets.json, and the benchmark's own measuring tools.

FLOPs (``FlopCounterMode``) and the peak of live tensor bytes are counted on the ``meta`` device at
the benchmark's small size: nothing is computed, and the figures are the same on every machine.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_lrwa_step", ROOT / "benchmarks" / "bench_lrwa_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
BUDGETS = json.loads((ROOT / "benchmarks" / "budgets.json").read_text())


@pytest.fixture(scope="module")
def counts():
    """(FLOPs, live bytes) of every budgeted variant and the joint baseline, per objective."""
    size = bench.SIZES[BUDGETS["size"]]
    result = {}
    for objective in ("paper", "official"):
        limits = BUDGETS[objective]["deterministic"]
        names = {bench.BASELINE} | {name for figure in limits.values() for name in figure}
        result[objective] = {name: bench.update_counts(name, size, objective) for name in sorted(names)}
    return result


@pytest.mark.parametrize("objective", ["paper", "official"])
@pytest.mark.parametrize("figure,index", [("flops_ratio", 0), ("live_memory_ratio", 1)])
def test_lrwa_costs_stay_within_budget(counts, objective, figure, index):
    measured = counts[objective]
    baseline = measured[bench.BASELINE][index]
    over = {name: round(measured[name][index] / baseline, 3)
            for name, limit in BUDGETS[objective]["deterministic"][figure].items()
            if measured[name][index] / baseline > limit}
    assert not over, f"{figure} over budget ({objective}): {over}"


def test_budget_structure_covers_every_lrwa_mode():
    for objective in ("paper", "official"):
        for figure in ("flops_ratio", "live_memory_ratio"):
            assert set(BUDGETS[objective]["deterministic"][figure]) == set(bench.LRWA_MODES)


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
    result = {"objective": "paper", "device_type": "cpu", "rows": [
        {"variant": "lrwa-fd", "flops_ratio": 2.5, "live_memory_ratio": 1.0},
        {"variant": "lrwa-exact", "flops_ratio": 3.0, "live_memory_ratio": 1.0, "time_ratio": 99.0},
    ]}
    limit = BUDGETS["paper"]["deterministic"]["flops_ratio"]["lrwa-fd"]
    assert bench.budget_breaches(result, BUDGETS) == [f"lrwa-fd: flops_ratio 2.50 > budget {limit} (deterministic)"]
    result["device_type"] = "cuda"
    assert any(line.startswith("lrwa-exact: time_ratio 99.00") for line in bench.budget_breaches(result, BUDGETS))


def test_benchmark_reproduces_the_authors_gradient():
    """The ``higher`` variant the benchmark times computes the same update as fastlrwa's official exact."""
    pytest.importorskip("higher")
    from fastlrwa.updates.lrwa import lrwa_grads
    from fastlrwa.updates.options import LRWAOptions

    torch.manual_seed(13)
    student = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 6)).double()
    teacher = copy.deepcopy(student).eval()
    x_new, x_mem = torch.randn(7, 3, 5, 5, dtype=torch.float64), torch.randn(3, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        problem = bench.Problem(student, teacher, x_new, torch.randn(7, 6, dtype=torch.float64), x_mem, teacher(x_mem))
    variant = bench.make_variant("higher", problem, "official")
    variant.update()
    authors = torch.cat([p.grad.flatten() for p in variant.optimizer.param_groups[0]["params"]])

    params = {name: p.detach() for name, p in student.named_parameters()}
    grads, _ = lrwa_grads(student, params, dict(copy.deepcopy(student).named_buffers()), problem.x_new, problem.t_new,
                          problem.x_mem, problem.t_mem,
                          options=LRWAOptions(alpha=bench.ALPHA, weight_decay=bench.WEIGHT_DECAY, objective="official",
                                              hvp="exact", exact_method="forward"))
    ours = torch.cat([grads[name].flatten() for name in params])
    assert float((ours - authors).norm() / authors.norm()) <= 1e-10
