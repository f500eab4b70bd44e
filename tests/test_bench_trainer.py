"""benchmarks/bench_trainer.py: the batch a run is asked for is the batch it trains at."""

from __future__ import annotations

import json

from conftest import load_benchmark


def test_batch_size_replaces_the_presets_and_the_tiny_batch(tmp_path):
    bench = load_benchmark("bench_trainer")
    batch = 11  # neither the preset's 64 nor the tiny sizes' 8
    argv = ["--setup", "digits", "--modes", "default", "--tiny", "--train-only", "--epochs", "1"]
    argv += ["--batch-size", str(batch), "--device", "cpu", "--work", str(tmp_path / "work"), "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / f"trainer_digits_cpu_default_b{batch}_tiny.json").read_text())
    (run,) = result["runs"]
    saved = json.loads((tmp_path / "work" / "digits" / "run-default" / "config.json").read_text())
    assert saved["config"]["schedule"]["batch_size"] == batch == run["batch"]
    # the run's rate counts samples of the asked batch: (g + s) steps of `batch` per iteration, 2 iterations
    (epoch,) = run["train"]["epochs"]
    samples = 2 * run["steps_per_iteration"] * batch
    assert abs(epoch["samples_per_s"] * epoch["epoch_time_s"] - samples) < 1e-6 * samples
