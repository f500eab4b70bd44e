"""benchmarks/profile_step.py writes a trace that TensorBoard's PyTorch Profiler plugin can read."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_profile_trace_opens_in_the_pytorch_profiler_plugin(tmp_path):
    profile_step = _load("profile_step")
    assert (
        profile_step.main(
            [
                "--kind",
                "plain",
                "--wait",
                "0",
                "--warmup",
                "1",
                "--active",
                "1",
                "--device",
                "cpu",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    traces = list(tmp_path.glob("plain.*.pt.trace.json"))
    assert len(traces) == 1
    data_module = pytest.importorskip("torch_tb_profiler.profiler.data")
    worker, span = traces[0].name.split(".")[:2]
    data = data_module.RunProfileData.parse(worker, span, str(traces[0]), None)
    data.process()
    assert data.steps_names  # the plugin found the profiled step
