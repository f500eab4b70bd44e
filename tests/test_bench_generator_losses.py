"""benchmarks/bench_generator_losses.py runs and its share is the ratio of the two times it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generator_losses.py"


def test_loss_head_share_is_head_over_step(tmp_path):
    out = tmp_path / "gen.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--settings", "digits preset", "--repeats", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())["results"]
    assert 0 < row["loss_head_s"] < row["step_s"]
    assert row["loss_head_share"] == pytest.approx(row["loss_head_s"] / row["step_s"])
    assert "| digits preset (lenet5 -> lenet5_half) | 64 | 10 |" in done.stdout
