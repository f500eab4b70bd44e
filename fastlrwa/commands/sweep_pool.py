"""Run ``fastlrwa train`` processes side by side inside a CPU or GPU budget, and stop them cleanly.

CPU: ``jobs`` processes at a time, each limited to ``threads`` OpenMP/MKL threads through its
environment (torch sizes its thread pool from ``OMP_NUM_THREADS`` at start-up). One thread a job is
the default: the small CPU models are overhead-bound, and more threads than cores make OpenMP spin at
barriers (measured on 2026-12-01: an 8-12x slowdown with three jobs on two cores).

GPU: each process sees one device through ``CUDA_VISIBLE_DEVICES``; a starting job takes the visible
device with the fewest running jobs (the first such in order), so ``jobs`` = number of devices puts one
run on each.

Every child runs in its own session, so a Ctrl-C in the terminal reaches the sweep only; the sweep
passes it on as one SIGINT per child, on which ``train`` finishes its iteration, writes a checkpoint
and exits with 130. A second Ctrl-C is passed on again, and ``train`` stops at once (its last
checkpoint stays). SIGTERM (e.g. a batch system's time limit) is treated as Ctrl-C.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

POLL_SECONDS = 0.2
# A child asked to stop finishes its iteration and writes a checkpoint; paper-size iterations take seconds.
ABANDON_WAIT_SECONDS = 300


@dataclass(frozen=True)
class DevicePlan:
    """Where the children run: ``cpu``, or ``cuda`` on the listed visible devices; ``threads`` CPU threads each."""

    kind: str
    threads: int
    gpus: tuple[str, ...] = ()


def visible_gpus(environ: Mapping[str, str], device_count: int) -> tuple[str, ...]:
    """The devices to hand out: the entries of ``CUDA_VISIBLE_DEVICES`` where set, else 0..count-1."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(entry.strip() for entry in listed.split(",") if entry.strip())
    return tuple(str(index) for index in range(device_count))


def pick_gpu(gpus: Sequence[str], running: Mapping[str, int]) -> str:
    """The device with the fewest running jobs; ties go to the first in ``gpus``."""
    return min(gpus, key=lambda gpu: (running.get(gpu, 0), gpus.index(gpu)))


def child_environment(base: Mapping[str, str], *, threads: int, gpu: str | None) -> dict[str, str]:
    """``base`` with the child's thread budget, its device and unbuffered output (its log fills as it runs)."""
    environment = dict(base)
    environment.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    if gpu is not None:
        environment["CUDA_VISIBLE_DEVICES"] = gpu
    return environment


@dataclass
class Job:
    """One process to run: its command, its log file and whatever the caller wants back with it."""

    argv: list[str]
    log_path: Path
    tag: Any
    header: str = ""


@dataclass
class Finished:
    job: Job
    returncode: int
    seconds: float
    stopped: bool  # the sweep asked it to stop


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    gpu: str | None
    started: float
    log: Any = field(repr=False)


@contextmanager
def _counting_stop_signals() -> Iterator[list[int]]:
    """Count SIGINT and SIGTERM instead of dying on them; the handler only counts (printing from a handler can
    collide with the main loop's own output), the loop acts on the count."""
    received = [0]
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        received[0] += 1

    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class Pool:
    """Runs jobs, at most ``jobs`` at once, reporting each start and end through the callbacks."""

    def __init__(
        self,
        jobs: int,
        plan: DevicePlan,
        *,
        on_start: Callable[[Job, str | None], None],
        on_finish: Callable[[Finished], None],
        on_stop: Callable[[int, int], None],
        ready: Callable[[Job], bool] = lambda job: True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.jobs = jobs
        self.plan = plan
        self.on_start = on_start
        self.on_finish = on_finish
        self.on_stop = on_stop  # (signals received so far, processes asked to stop)
        self.ready = ready  # asked just before a job starts; a job it declines is dropped (it says why)
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_requests = 0
        self._running: list[_Running] = []

    def _start(self, job: Job) -> None:
        gpu = None
        if self.plan.kind == "cuda":
            gpu = pick_gpu(self.plan.gpus, collections.Counter(running.gpu for running in self._running))
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(job.log_path, "ab")
        log.write(job.header.encode("utf-8"))
        log.flush()
        process = subprocess.Popen(
            job.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_environment(self.environ, threads=self.plan.threads, gpu=gpu),
            start_new_session=True,
        )
        self._running.append(_Running(job, process, gpu, time.monotonic(), log))
        self.on_start(job, gpu)

    def _stop_children(self) -> None:
        asked = 0
        for running in self._running:
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGINT)
                asked += 1
        self.on_stop(self.stop_requests, asked)

    def _reap(self) -> None:
        still = []
        for running in self._running:
            returncode = running.process.poll()
            if returncode is None:
                still.append(running)
                continue
            running.log.close()
            self.on_finish(
                Finished(running.job, returncode, time.monotonic() - running.started, self.stop_requests > 0)
            )
        self._running = still

    def run(self, jobs: Sequence[Job]) -> list[Job]:
        """Run ``jobs`` in order; returns those never started because the sweep was stopped."""
        pending = collections.deque(jobs)
        with _counting_stop_signals() as received:
            try:
                while self._running or (pending and not received[0]):
                    if received[0] > self.stop_requests:
                        self.stop_requests = received[0]
                        self._stop_children()
                    while pending and len(self._running) < self.jobs and not received[0]:
                        job = pending.popleft()
                        if self.ready(job):
                            self._start(job)
                    time.sleep(POLL_SECONDS)
                    self._reap()
            except BaseException:
                self._abandon()
                raise
            self.stop_requests = received[0]
        return list(pending)

    def _abandon(self) -> None:
        """The sweep itself failed: stop the children as on Ctrl-C rather than leave them running unwatched."""
        for running in self._running:
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGINT)
        for running in self._running:
            try:
                running.process.wait(timeout=ABANDON_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
            running.log.close()
        self._running = []
