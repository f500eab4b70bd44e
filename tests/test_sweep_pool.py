"""The sweep's process pool with stand-in children (plain Python processes, no training): the thread and
GPU budget each child gets, and Ctrl-C passed on as one SIGINT per child with nothing new started."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from fastlrwa.commands.sweep_pool import DevicePlan, Job, Pool, child_environment, pick_gpu, visible_gpus

REPORT_ENVIRONMENT = (
    "import os, time; print('gpu', os.environ.get('CUDA_VISIBLE_DEVICES'), 'threads', os.environ['OMP_NUM_THREADS'],"
    " os.environ['MKL_NUM_THREADS'], 'buffered', os.environ['PYTHONUNBUFFERED']); time.sleep(0.3)"
)
# Stands in for `fastlrwa train`: on the first SIGINT it "checkpoints" and exits 130, like the trainer.
CHECKPOINT_ON_SIGINT = """
import signal, sys, time
def stop(signum, frame):
    print('checkpoint written on SIGINT', flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
print('ready', flush=True)
time.sleep(60)
sys.exit(0)
"""


def test_gpu_assignment_prefers_the_least_busy_device() -> None:
    assert pick_gpu(("0", "1", "2"), {}) == "0"
    assert pick_gpu(("0", "1", "2"), {"0": 1}) == "1"
    assert pick_gpu(("0", "1", "2"), {"0": 1, "1": 1, "2": 1}) == "0"
    assert pick_gpu(("3", "1"), {"3": 2, "1": 1}) == "1"
    assert pick_gpu(("GPU-a1", "GPU-b2"), {"GPU-a1": 1}) == "GPU-b2"


def test_visible_gpus_come_from_the_environment_or_the_count() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4, 6"}, 8) == ("4", "6")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 8) == ()
    assert visible_gpus({}, 3) == ("0", "1", "2")


def test_child_environment_sets_the_budget_and_keeps_the_rest() -> None:
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "16", "CUDA_VISIBLE_DEVICES": "0,1"}
    cpu = child_environment(base, threads=1, gpu=None)
    assert cpu == {
        "PATH": "/bin",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    assert child_environment(base, threads=3, gpu="1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert base["OMP_NUM_THREADS"] == "16"


def _jobs(tmp_path: Path, n: int, code: str) -> list[Job]:
    return [
        Job([sys.executable, "-c", code], tmp_path / f"run{i}" / "train.log", f"run{i}", f"=== header {i}\n")
        for i in range(n)
    ]


def test_jobs_spread_over_the_gpus_with_their_thread_budget(tmp_path) -> None:
    starts, finishes = [], []
    pool = Pool(
        2,
        DevicePlan("cuda", 3, ("5", "7")),
        on_start=lambda job, gpu: starts.append((job.tag, gpu)),
        on_finish=finishes.append,
        on_stop=lambda *a: pytest.fail("nothing was stopped"),
    )
    assert pool.run(_jobs(tmp_path, 5, REPORT_ENVIRONMENT)) == []
    assert [tag for tag, _ in starts] == [f"run{i}" for i in range(5)]
    assert [gpu for _, gpu in starts[:2]] == ["5", "7"]
    assert sorted(f.job.tag for f in finishes) == [f"run{i}" for i in range(5)]
    assert all(f.returncode == 0 and not f.stopped and f.seconds > 0.2 for f in finishes)
    for tag, gpu in starts:
        log = (tmp_path / tag / "train.log").read_text().splitlines()
        assert log == [f"=== header {tag[3:]}", f"gpu {gpu} threads 3 3 buffered 1"]


def test_no_more_than_jobs_children_at_once_on_cpu(tmp_path) -> None:
    running, peak = [0], [0]

    def started(job, gpu):
        assert gpu is None
        running[0] += 1
        peak[0] = max(peak[0], running[0])

    def finished(result):
        running[0] -= 1

    Pool(2, DevicePlan("cpu", 1), on_start=started, on_finish=finished, on_stop=lambda *a: None).run(
        _jobs(tmp_path, 5, REPORT_ENVIRONMENT)
    )
    assert peak[0] == 2 and running[0] == 0
    assert "gpu None threads 1 1" in (tmp_path / "run4" / "train.log").read_text()


def test_ctrl_c_is_passed_on_once_and_stops_new_starts(tmp_path) -> None:
    started, finishes, stops = [], [], []
    jobs = _jobs(tmp_path, 3, CHECKPOINT_ON_SIGINT)

    def interrupt_when_ready() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = [tmp_path / f"run{i}" / "train.log" for i in range(2)]
            if all(log.exists() and "ready" in log.read_text() for log in logs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    handler_before = signal.getsignal(signal.SIGINT)
    watcher = threading.Thread(target=interrupt_when_ready, daemon=True)
    watcher.start()
    pool = Pool(
        2,
        DevicePlan("cpu", 1),
        on_start=lambda job, gpu: started.append(job.tag),
        on_finish=finishes.append,
        on_stop=lambda signals, asked: stops.append((signals, asked)),
    )
    never_started = pool.run(jobs)
    watcher.join()
    assert [job.tag for job in never_started] == ["run2"] and started == ["run0", "run1"]
    assert stops == [(1, 2)] and pool.stop_requests == 1
    assert sorted((f.job.tag, f.returncode, f.stopped) for f in finishes) == [("run0", 130, True), ("run1", 130, True)]
    for tag in started:
        assert "checkpoint written on SIGINT" in (tmp_path / tag / "train.log").read_text()
    assert not (tmp_path / "run2").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_an_error_in_the_sweep_stops_the_children_it_started(tmp_path) -> None:
    waiting = tmp_path / "run1" / "train.log"
    wait_for_sibling = (
        f"import pathlib, time\nlog = pathlib.Path({str(waiting)!r})\n"
        "while not (log.exists() and 'ready' in log.read_text()):\n    time.sleep(0.02)\n"
    )
    jobs = [
        Job([sys.executable, "-c", wait_for_sibling], tmp_path / "run0" / "train.log", "run0"),
        _jobs(tmp_path, 2, CHECKPOINT_ON_SIGINT)[1],
    ]

    def broken_bookkeeping(result) -> None:
        raise RuntimeError("bookkeeping failed")

    pool = Pool(
        2, DevicePlan("cpu", 1), on_start=lambda job, gpu: None, on_finish=broken_bookkeeping, on_stop=lambda *a: None
    )
    with pytest.raises(RuntimeError, match="bookkeeping failed"):
        pool.run(jobs)
    assert "checkpoint written on SIGINT" in waiting.read_text()
