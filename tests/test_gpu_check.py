"""benchmarks/gpu_check.sh end to end on the CPU (its --dry-run), and the pieces its report rests on.

The dry run runs every stage the GPU check runs, at tiny sizes; the stages that need a CUDA device or
a compiler run (the prewarm, the compiled LRWA steps, the export test) are reported as skipped, with
the reason. One dry run (about a minute on two idle cores) serves the tests of this module.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import load_benchmark
from fastlrwa.data import load_split

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
PREWARM = {
    f"prewarm_lrwa_{name}" for name in ("joint", "lrwa-exact", "lrwa-exact-reverse", "lrwa-fd", "lrwa-first-order")
} | {"prewarm_trainer", "prewarm_kernels"}
MEASURED = {
    "setup",
    "tests",
    "kernels_fp32",
    "kernels_bf16",
    "lrwa_amp_eager",
    "trainer_fp32",
    "trainer_amp_compile",
    "lrwa_fp32_eager",
}
SKIPPED_ON_A_CPU = PREWARM | {"lrwa_amp_compiled", "tests_export"}
EAGER_VARIANTS = {"joint", "lrwa-exact", "lrwa-exact-reverse", "lrwa-fd", "lrwa-first-order"}


def _check(out: Path, work: Path, *options: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(work), *options],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work")
    completed = _check(out, work)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    return completed, out, json.loads((out / "summary.json").read_text())


def test_dry_run_reports_every_stage_and_writes_few_files(dry_run):
    completed, out, summary = dry_run
    assert sorted(path.name for path in out.iterdir()) == [
        "gpu_check.log",
        "raw.tar.gz",
        "results.csv",
        "summary.json",
        "summary.md",
    ]
    stages = {stage["stage"]: stage for stage in summary["stages"]}
    assert set(stages) == MEASURED | SKIPPED_ON_A_CPU
    for name in MEASURED:
        assert stages[name]["status"] == "ok", stages[name]
    for name in SKIPPED_ON_A_CPU:
        assert stages[name]["status"] == "skipped"
        assert "CUDA" in stages[name]["note"] or "--with-compile" in stages[name]["note"]
    markdown = (out / "summary.md").read_text()
    for name in stages:
        assert f"| {name} |" in markdown
    # The summary is the last thing printed, so the end of the output shows it.
    assert completed.stdout.rstrip().endswith(markdown.rstrip().splitlines()[-1])
    with tarfile.open(out / "raw.tar.gz") as archive:
        names = archive.getnames()
    assert "./stages.jsonl" in names and any(name.endswith("run-fp32/metrics.jsonl") for name in names)
    assert not any(name.endswith(".pt") for name in names)


def test_dry_run_measures_the_trainer_end_to_end(dry_run):
    _, _, summary = dry_run
    runs = {run["mode"]: run for run in summary["trainer"]}
    assert set(runs) == {"fp32", "amp"}  # the compiled mode runs as --amp alone without --with-compile
    for run in runs.values():
        assert run["train"]["returncode"] == 0 and run["train"]["samples_per_s"] > 0
        assert [epoch["epoch"] for epoch in run["train"]["epochs"]] == [1, 2]
        harness = run["harness"]
        assert harness["samples_per_s"] > 0 and harness["peak_memory_mib"] is None  # no CUDA
        shares = harness["phase_share"]
        assert set(shares) == {"generator_step", "student_batch", "student_update", "other"}
        assert all(0.0 <= share <= 1.0 for share in shares.values())
        assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)
        # Every phase was called: the student updates at least once per iteration, so on time they lead.
        assert min(shares[phase] for phase in shares if phase != "other") > 0
        samples = run["steps_per_iteration"] * run["batch"]
        assert harness["samples_per_s"] == pytest.approx(samples / harness["iteration_s"])


def test_dry_run_measures_lrwa_steps_and_kernels(dry_run):
    _, out, summary = dry_run
    lrwa = {result["run"]: result for result in summary["lrwa"]}
    assert set(lrwa) == {"amp-eager", "fp32-eager"} and lrwa["amp-eager"]["amp"] == "bf16"
    for result in lrwa.values():
        rows = {row["variant"]: row for row in result["rows"]}
        assert EAGER_VARIANTS <= set(rows) <= EAGER_VARIANTS | {"higher"}
        assert ("higher" in rows) != ("higher" in result["skipped"])
        assert all(row["error"] is None and row["median_s"] > 0 for row in rows.values())
        assert rows["joint"]["time_ratio"] == 1.0
    kernels = {result["run"]: result for result in summary["kernels"]}
    assert set(kernels) == {"fp32", "bf16"}
    for dtype, result in kernels.items():
        cases = {(row["loss"], row["dtype"], row["cols"]) for row in result["results"]}
        assert cases == {(loss, dtype, cols) for loss in ("mae", "js_paper", "js_official") for cols in (10, 100)}
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["section", "name", "metric", "value"] and all(len(row) == 4 for row in rows)
    assert {row[0] for row in rows[1:]} == {"stage", "kernels", "lrwa", "trainer_train", "trainer_harness"}


def test_stages_past_the_time_budget_are_reported_and_fail_the_check(tmp_path):
    completed = _check(tmp_path / "out", tmp_path / "work", "--stages", "kernels", "--budget", "1")
    assert completed.returncode == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stages = {stage["stage"]: stage for stage in summary["stages"]}
    assert set(stages) == {"setup", "kernels_fp32", "kernels_bf16"}
    for name in ("kernels_fp32", "kernels_bf16"):
        assert stages[name]["status"] == "skipped" and stages[name]["note"].startswith("not started")
    assert "incomplete: kernels_fp32, kernels_bf16" in completed.stdout  # the report's last line


def test_junit_results_are_counted_with_failures_and_skip_reasons(tmp_path):
    report = load_benchmark("gpu_check_report")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "junit-tests.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">'
        '<testcase classname="tests.test_a" name="test_ok" time="0.1"/>'
        '<testcase classname="tests.test_a" name="test_bad" time="0.1">'
        '<failure message="AssertionError: 3 != 4&#10;more">trace</failure></testcase>'
        '<testcase classname="tests.test_b" name="test_gpu[1]" time="0"><skipped message="needs a CUDA device"/>'
        '</testcase><testcase classname="tests.test_b" name="test_gpu[2]" time="0">'
        '<skipped message="needs a CUDA device"/></testcase></testsuite></testsuites>'
    )
    (run,) = report.load_tests(tmp_path)
    assert run["stage"] == "tests" and run["passed"] == 1
    assert run["failed"] == [{"test": "test_a::test_bad", "message": "AssertionError: 3 != 4"}]
    assert run["skipped"] == {"needs a CUDA device": 2}


def test_written_cifar100_test_split_is_what_the_loader_reads(tmp_path):
    bench_trainer = load_benchmark("bench_trainer")
    bench_trainer.write_cifar100_test_split(tmp_path, 37)
    with open(tmp_path / "cifar-100-python" / "test", "rb") as handle:
        written = pickle.load(handle)
    split = load_split("cifar100", "test", root=tmp_path)
    assert tuple(split.images.shape) == (37, 3, 32, 32) and split.labels.tolist() == written["fine_labels"]
    # CIFAR's rows: 1024 red, then 1024 green, then 1024 blue values of each image.
    assert split.images.reshape(37, -1).numpy().tolist() == written["data"].tolist()
    assert len(set(written["fine_labels"])) > 1 and written["data"].std() > 0
