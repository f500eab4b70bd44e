"""benchmarks/bench_kernels.py: no numbers without a GPU, the goal verdict, the result files."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the script's annotations through sys.modules.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _result(bench, **changes):
    base = bench.Result(
        date="2026-01-01T00:00:00+00:00",
        device="test GPU",
        torch_version="t",
        triton_version="tr",
        loss="mae",
        mode="forward+backward",
        provider="triton",
        dtype="fp32",
        rows=4096,
        cols=100,
        median_ms=0.01,
        p20_ms=0.009,
        p80_ms=0.011,
        gb_per_s=2000.0,
        percent_of_copy_bandwidth=75.0,
        speedup_vs_eager=2.5,
    )
    return replace(base, **changes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_gpu_it_says_so_and_measures_nothing(bench, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--out-dir", str(tmp_path)]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_goal_verdict(bench) -> None:
    results = [
        _result(bench),
        _result(bench, loss="js_paper", percent_of_copy_bandwidth=69.0),
        _result(bench, loss="js_official", speedup_vs_eager=1.5),
        _result(bench, rows=1024),
        _result(bench, cols=10),
        _result(bench, provider="torch"),
        _result(bench, mode="forward"),
    ]
    lines = bench.goal_report(results)
    assert len(lines) == 3
    assert lines[0].startswith("goal MET  mae")
    assert lines[1].startswith("goal MISS js_paper") and "69.0% of copy" in lines[1]
    assert lines[2].startswith("goal MISS js_official") and "1.50x eager" in lines[2]


def test_results_append_to_csv_and_replace_json_and_markdown(bench, tmp_path: Path) -> None:
    first, second = [_result(bench)], [_result(bench, loss="js_paper", median_ms=0.02)]
    bench.write_results(first, tmp_path, "kernels", {"device": "test GPU"})
    bench.write_results(second, tmp_path, "kernels", {"device": "test GPU"})
    with open(tmp_path / "kernels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["loss"] for row in rows] == ["mae", "js_paper"]
    assert rows[1]["device"] == "test GPU" and float(rows[1]["median_ms"]) == 0.02
    saved = json.loads((tmp_path / "kernels.json").read_text())
    assert [entry["loss"] for entry in saved["results"]] == ["js_paper"]
    markdown = (tmp_path / "kernels.md").read_text()
    assert "| js_paper | forward+backward | triton | fp32 | 4096 | 100 | 0.0200 |" in markdown


def test_cpu_sweep_times_every_loss_and_mode(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep loop itself, on CPU: eager reference and the Triton kernels in the interpreter."""
    if not bench.kernel_backend.TRITON_AVAILABLE:
        pytest.skip("triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    results = bench.run_sweep(torch.device("cpu"), "fp32", [8], [10], ("torch", "triton"), None, "cpu test")
    assert {(r.loss, r.mode) for r in results} == {(loss.name, mode) for loss in bench.LOSSES for mode in bench.MODES}
    for result in results:
        assert result.p20_ms <= result.median_ms <= result.p80_ms
        traffic = bench.ELEMENT_TRAFFIC[result.mode] * 8 * 10 * 4
        assert result.gb_per_s == pytest.approx(traffic / (result.median_ms * 1e-3) / 1e9)
        assert result.percent_of_copy_bandwidth is None
    eager = [r for r in results if r.provider == "torch"]
    assert all(r.speedup_vs_eager == 1.0 for r in eager)
