"""benchmarks/quickstart.py writes the README's quick-start figures: from a measurement, between its markers
only, and the README in the repository holds exactly what the recorded measurement renders to."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("quickstart", REPOSITORY / "benchmarks" / "quickstart.py")
quickstart = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quickstart)


def fake_measurement(rng: random.Random, idle: bool) -> dict:
    def run(wall: float) -> dict:
        return {
            "wall_s": wall,
            "training_s": wall * rng.uniform(0.5, 0.9),
            "epochs": rng.randrange(5, 40),
            "final_accuracy": rng.uniform(10, 99),
            "best_accuracy": rng.uniform(10, 99),
            "teacher_accuracy": rng.uniform(90, 99.9),
            "teacher_arch": "lenet5",
            "student_arch": "lenet5_half",
            "method": "lrwa-mb",
            "seed": 0,
            "load_average_before": rng.uniform(0, 4),
            "busiest_processes_before": [],
        }

    cached = run(rng.uniform(61, 600))
    return {
        "date": "2031-02-03",
        "command": "fastlrwa train",
        "idle": idle,
        "runs_agree": True,
        "machine": {
            "cpu": "Test CPU 9000",
            "cores": 2,
            "platform": "linux",
            "python": "3.11",
            "torch": "9.9.9",
            "omp_num_threads": None,
        },
        "first_use": {**run(rng.uniform(1, 59)), "teacher_training_s": rng.uniform(1, 30)},
        "cached": cached,
    }


@pytest.mark.parametrize("idle", [True, False])
def test_the_block_states_each_figure_of_the_measurement(rng, idle):
    measurement = fake_measurement(rng, idle)
    block = quickstart.render_block(measurement)
    cached, first = measurement["cached"], measurement["first_use"]
    minutes, seconds = divmod(round(cached["wall_s"]), 60)
    assert block.startswith(quickstart.BEGIN) and block.endswith(quickstart.END)
    assert (
        f"{minutes} min {seconds:02d} s ({cached['training_s']:.1f} s of it training {cached['epochs']} epochs)"
        in block
    )
    assert f"| {round(first['wall_s'])} s ({first['teacher_training_s']:.1f} s of it training the teacher) |" in block
    assert f"{cached['teacher_accuracy']:.2f}%" in block
    assert f"{cached['final_accuracy']:.2f}% / {cached['best_accuracy']:.2f}%" in block
    assert "2031-02-03" in block and "Test CPU 9000" in block and "torch 9.9.9" in block
    assert f"{first['load_average_before']:.2f}, {cached['load_average_before']:.2f}" in block
    assert ("(idle machine)" in block) is idle and ("not benchmarks" in block) is not idle


def test_only_the_text_between_the_markers_is_replaced(rng):
    before, after = "# Title\n\nprose above\n", "\n\nprose below | with a table |\n"
    text = before + quickstart.BEGIN + "\nold figures\n" + quickstart.END + after
    block = quickstart.render_block(fake_measurement(rng, True))
    replaced = quickstart.replace_block(text, block)
    assert replaced == before + block + after
    assert quickstart.replace_block(replaced, block) == replaced


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all",
        f"{quickstart.END}\nreversed\n{quickstart.BEGIN}",
        f"{quickstart.BEGIN}\none\n{quickstart.END}\n{quickstart.BEGIN}\ntwo\n{quickstart.END}",
    ],
)
def test_missing_or_broken_markers_are_refused(text):
    with pytest.raises(ValueError, match="markers"):
        quickstart.replace_block(text, "block")


def test_write_readme_rewrites_a_copy(tmp_path, rng):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{quickstart.BEGIN}\nstale\n{quickstart.END}\noutro\n")
    measurement = fake_measurement(rng, False)
    quickstart.write_readme(measurement, readme)
    assert readme.read_text() == f"intro\n{quickstart.render_block(measurement)}\noutro\n"


def test_the_readme_holds_what_the_recorded_measurement_renders_to():
    measurement = json.loads(quickstart.RESULTS.read_text())
    readme = quickstart.README.read_text()
    assert quickstart.replace_block(readme, quickstart.render_block(measurement)) == readme, (
        "README.md's quick-start block differs from benchmarks/results/quickstart.json: "
        "run python benchmarks/quickstart.py --readme-only"
    )


def test_the_benchmark_waits_for_the_load_to_fall_and_gives_up_at_its_limit():
    rng = random.Random()
    cores = rng.randrange(1, 9)
    threshold = quickstart.IDLE_LOAD_PER_CORE * cores
    busy_polls = rng.randrange(1, 7)
    # The load average seen at each poll: over the threshold busy_polls times, then under it.
    loads = [threshold * rng.uniform(1.0, 3.0) for _ in range(busy_polls)] + [threshold * rng.uniform(0.0, 0.99)]
    slept: list[float] = []
    poll = rng.uniform(0.5, 10.0)
    waited = quickstart.wait_until_quiet(1e9, cores, load=iter(loads).__next__, sleep=slept.append, poll_s=poll)
    assert len(slept) == busy_polls and waited == pytest.approx(busy_polls * poll)

    # A machine that stays busy: it stops after the first poll at or past the limit.
    slept.clear()
    limit = poll * rng.uniform(2.2, 5.8)
    waited = quickstart.wait_until_quiet(limit, cores, load=lambda: threshold * 2, sleep=slept.append, poll_s=poll)
    assert waited >= limit and waited - poll < limit and len(slept) == int(waited / poll + 0.5)
