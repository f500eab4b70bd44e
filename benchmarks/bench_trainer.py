"""End-to-end trainer throughput: samples/s of whole iterations, where an iteration's time goes, peak memory.

Each setup and mode is measured twice, both times on the real code:

1. ``fastlrwa train`` as a user runs it (``python -m fastlrwa train --preset ...``, in its own process)
   for ``--epochs`` epochs: the last epoch's ``samples_per_s`` and, on CUDA, its ``peak_memory_mb``
   from the run's metrics.jsonl, the process's wall time and peak RSS. The first epochs carry the
   compilation (epoch 1: the generator step and the plain student step; epoch 2: the LRWA step,
   the first epoch with a filled memory bank), so the last epoch is clean from 3 epochs on.
2. A phase harness on the parts ``build_run`` builds from that run's own config.json, driven by the
   trainer's own iteration (``Trainer._iteration``). After warm-up (plain steps, one memory push, LRWA steps),
   whole iterations are timed with no synchronisation inside them (one after the last), then again with each
   call the iteration makes to a phase wrapped in device synchronisations: the generator step, the student
   batches (the generator and teacher forwards that feed each student step, one compiled function when the run
   compiles), and the student updates (pure step and SGD step); ``other`` is the rest (latent sampling, replay
   bookkeeping, loss sums). The trainer itself is neither changed nor synchronised for this.

Setups: ``digits`` and ``fashion-mnist`` (the CPU presets, on their real data) and ``paper`` (the
cifar100 preset: ResNet-34 teacher -> ResNet-18 student, batch 512, 100 classes, latent 1000) without
the dataset: a test split in CIFAR-100's on-disk format is written to the work folder. Teachers have
random weights, written with the project's checkpoint writer: time and memory do not depend on the
weights. Every run pushes to the memory bank after every epoch (``--memory-push-every 1``, the
authors' first push) so that the LRWA step runs from the second epoch on. ``--tiny`` shrinks the
networks and the batch so that a whole run takes seconds on a CPU (dry runs of this benchmark).

Modes: ``default`` (no flags: what a user gets), ``fp32`` (``--no-amp --no-compile``: eager float32), ``amp``
(``--amp``, bf16 autocast), ``compile`` (``--no-amp --compile``), ``amp+compile``, ``default+compile`` (``--compile``
alone: the default precision, compiled). ``--batch-size`` replaces the preset's batch (the results' file name
then ends in ``_b<N>``).

In the same run the machine's matmul peak is measured (a square matmul in float32 and in bf16, best of several),
and the generator step's floating-point work is counted (``torch.utils.flop_counter`` over the generator's
forward and backward and the teacher's and the student's forwards and input gradients it takes); its achieved
GFLOP/s is that count over the step's median time, reported against both peaks.

    python benchmarks/bench_trainer.py --setup digits fashion-mnist             # CPU presets, default and fp32
    python benchmarks/bench_trainer.py --setup paper --device cuda --modes fp32 amp+compile
    python benchmarks/bench_trainer.py --setup paper --tiny --device cpu        # a dry run, seconds

Results: ``trainer_<setups>_<device>_<modes>.json`` and ``.md`` in ``--out``; the runs' own folders
(config.json, metrics.jsonl, the train log) under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fastlrwa.atomic_io import atomic_write_json, atomic_write_text
from fastlrwa.config.schema import TrainConfig, from_dict
from fastlrwa.data import dataset_info
from fastlrwa.distributed import DistributedContext
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint
from fastlrwa.progress import epoch_progress
from fastlrwa.runtime import autocast_to, seed_everything
from fastlrwa.trainer.build import build_run
from fastlrwa.trainer.loop import Trainer
from fastlrwa.trainer.run_dir import RunDir

HERE = Path(__file__).resolve().parent
PHASES = ("generator_step", "student_batch", "student_update")
MODE_FLAGS = {
    "default": [],
    "fp32": ["--no-amp", "--no-compile"],
    "amp": ["--amp", "--no-compile"],
    "compile": ["--no-amp", "--compile"],
    "amp+compile": ["--amp", "--compile"],
    "default+compile": ["--compile"],
}
# Small enough that a run takes seconds on a CPU, with every part of the run still there.
TINY_FLAGS = [
    "--student",
    "lenet5_half",
    "--student-steps",
    "2",
    "--batch-size",
    "8",
    "--latent-dim",
    "16",
    "--generator-width",
    "8",
    "--memory-slot-size",
    "4",
    "--eval-batch-size",
    "64",
]
TINY_TEACHER = "lenet5"


@dataclass(frozen=True)
class Setup:
    preset: str
    dataset: str
    teacher_arch: str
    iters_per_epoch: int | None  # None: the preset's own
    timed_iterations: int
    written_test_images: int = 0  # > 0: the test split is written (CIFAR-100 format) instead of read


SETUPS = {
    "digits": Setup("digits", "digits", "lenet5", None, 10),
    "fashion-mnist": Setup("fashion-mnist", "fashion-mnist", "lenet5", None, 10),
    "paper": Setup("cifar100", "cifar100", "resnet34", 3, 3, written_test_images=1024),
}


# ----- inputs: a random teacher, a test split ---------------------------------------------------------------------
def write_random_teacher(path: Path, arch: str, dataset: str) -> Path:
    """A randomly initialised ``arch`` for ``dataset``, saved as ``fastlrwa pretrain`` saves a teacher."""
    info = dataset_info(dataset)
    torch.manual_seed(0)
    model = build_model(arch, info.num_classes, in_channels=info.channels, image_size=info.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model_checkpoint(path, model.eval(), ModelMeta.for_dataset(arch, info))
    return path


def write_cifar100_test_split(root: Path, images: int) -> Path:
    """``root/cifar-100-python/test`` as CIFAR-100's python archive holds it, with random images."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, images)
    batch = {
        "filenames": [f"random_{i}.png" for i in range(images)],
        "batch_label": "random test images for bench_trainer",
        "fine_labels": [int(label) for label in labels],
        "coarse_labels": [int(label) // 5 for label in labels],
        # rows of 1024 red, then 1024 green, then 1024 blue values, as CIFAR stores them
        "data": rng.integers(0, 256, (images, 3 * 32 * 32), dtype=np.uint8),
    }
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test", "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    return root


# ----- 1. the real command -----------------------------------------------------------------------------------------
def train_command(
    setup: Setup,
    mode: str,
    *,
    teacher: Path,
    run_dir: Path,
    data_root: Path | None,
    device: str,
    epochs: int,
    tiny: bool,
    batch_size: int | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "fastlrwa",
        "train",
        "--preset",
        setup.preset,
        "--teacher",
        str(teacher),
        "--out",
        str(run_dir),
        "--force",
        "--epochs",
        str(epochs),
        "--memory-push-every",
        "1",
        "--no-progress",
        "--device",
        device,
        "--seed",
        "0",
        *MODE_FLAGS[mode],
    ]
    iterations = 2 if tiny else setup.iters_per_epoch
    if iterations is not None:
        command += ["--iters-per-epoch", str(iterations)]
    if data_root is not None:
        command += ["--data-root", str(data_root)]
    command += TINY_FLAGS if tiny else []
    # after the tiny sizes, so that an explicit batch wins over theirs
    return command + ([] if batch_size is None else ["--batch-size", str(batch_size)])


def run_train(command: list[str], run_dir: Path) -> dict[str, Any]:
    """Run ``fastlrwa train``; its wall time, peak RSS, exit status and per-epoch records."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        # wait4 gives this child's own peak RSS (getrusage would give the largest over all children so far)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "command": " ".join(command[1:]),
        "returncode": process.returncode,
        "wall_s": time.perf_counter() - started,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "epochs": [],
    }
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            result["epochs"].append(
                {
                    key: record.get(key)
                    for key in (
                        "epoch",
                        "epoch_time_s",
                        "samples_per_s",
                        "step_time_s",
                        "peak_memory_mb",
                        "loss_student",
                        "loss_generator",
                        "test_accuracy",
                    )
                }
            )
    if process.returncode != 0:
        result["error"] = "\n".join(log.read_text().strip().splitlines()[-5:])
    elif result["epochs"]:
        last = result["epochs"][-1]
        result["samples_per_s"] = last["samples_per_s"]
        result["peak_memory_mib"] = last["peak_memory_mb"]
    return result


# ----- 2. the phase harness ----------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseClock:
    """Seconds per phase, each call timed between two device synchronisations."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            synchronize(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronize(self.device)
            self.seconds[phase] += time.perf_counter() - start
            return result

        return timed

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)


def phase_timed_parts(parts: Any, clock: PhaseClock) -> Any:
    """``parts`` with the three things an iteration calls routed through ``clock``."""
    return replace(
        parts,
        generator_update=SimpleNamespace(step=clock.wrap("generator_step", parts.generator_update.step)),
        student_batch=clock.wrap("student_batch", parts.student_batch),
        student_update=SimpleNamespace(step=clock.wrap("student_update", parts.student_update.step)),
    )


@contextmanager
def built_run(run_dir: Path) -> Iterator[tuple[TrainConfig, Any]]:
    """The parts of the run in ``run_dir``, built from its config.json as ``fastlrwa train`` built them."""
    saved = json.loads((run_dir / "config.json").read_text())
    config = from_dict(TrainConfig, saved["config"])
    seed_everything(config.runtime.seed)
    with DistributedContext.from_environment(config.runtime.device) as context:
        yield config, build_run(config, Path(saved["teacher_path"]), context)


def advance(trainer: Trainer) -> None:
    """One iteration as the epoch loop runs it: its index moves on, so per-iteration schedules (diagnostics every
    N iterations, the student's step index) fall where they fall in a run."""
    trainer._iteration()
    trainer.iteration += 1


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` ``size``-square matmuls in ``dtype``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def generator_step_flops(parts: Any) -> float:
    """Floating-point operations of one generator step: the generator's forward and weight gradients, the
    teacher's and the student's forwards and their gradients with respect to the images, at the run's batch."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = parts.config.schedule.batch_size
    latent = torch.randn(batch, parts.generator.latent_dim, device=parts.device)
    weights = [parameter for parameter in parts.generator.parameters() if parameter.requires_grad]
    counter = FlopCounterMode(display=False)
    with counter, autocast_to(parts.device.type, parts.autocast_dtype):
        images = parts.generator(latent)
        loss = parts.teacher(images).float().logsumexp(1).mean() + parts.student(images).float().logsumexp(1).mean()
        loss.backward(inputs=weights)  # autograd.grad is not supported under the counter's module hooks
    for parameter in weights:
        parameter.grad = None
    return float(counter.get_total_flops())


def harness(run_dir: Path, timed_iterations: int, warmup_iterations: int) -> dict[str, Any]:
    with (
        built_run(run_dir) as (config, parts),
        epoch_progress(False, silent=True) as progress,
        tempfile.TemporaryDirectory() as scratch,
    ):
        device = parts.device
        trainer = Trainer(parts, RunDir(Path(scratch)), progress)
        started = time.perf_counter()
        for _ in range(warmup_iterations):  # the plain student step (replay not ready yet)
            advance(trainer)
        if parts.replay is not None:
            parts.replay.end_epoch(config.replay.push_every)
        for _ in range(warmup_iterations):  # the replay step (the LRWA step for lrwa-mb)
            advance(trainer)
        synchronize(device)
        warmup_s = time.perf_counter() - started
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        start = time.perf_counter()
        for _ in range(timed_iterations):
            advance(trainer)
        synchronize(device)
        iteration_s = (time.perf_counter() - start) / timed_iterations

        clock = PhaseClock(device)
        timed = Trainer(phase_timed_parts(parts, clock), RunDir(Path(scratch)), progress)
        timed.iteration = trainer.iteration
        per_iteration: list[tuple[float, dict[str, float]]] = []
        for _ in range(timed_iterations):
            clock.reset()
            synchronize(device)
            start = time.perf_counter()
            advance(timed)
            synchronize(device)
            per_iteration.append((time.perf_counter() - start, dict(clock.seconds)))
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        step_flops = generator_step_flops(parts)

    s = config.schedule
    samples_per_iteration = (s.gen_steps + s.student_steps) * s.batch_size
    synced_s = statistics.median(total for total, _ in per_iteration)
    phase_s = {phase: statistics.median(seconds[phase] for _, seconds in per_iteration) for phase in PHASES}
    phase_s["other"] = max(synced_s - sum(phase_s.values()), 0.0)
    return {
        "warmup_iterations": 2 * warmup_iterations,
        "warmup_s": warmup_s,
        "timed_iterations": timed_iterations,
        "iteration_s": iteration_s,
        "samples_per_s": samples_per_iteration / iteration_s,
        "synced_iteration_s": synced_s,
        "phases_ms": {phase: 1e3 * seconds for phase, seconds in phase_s.items()},
        "phase_share": {phase: seconds / synced_s for phase, seconds in phase_s.items()},
        "peak_memory_mib": peak,
        # the dtype the generator computes in: its own (the default on a CPU with native bf16), else the run's
        "generator_precision": str(parts.generator.compute_dtype or parts.autocast_dtype or torch.float32).removeprefix(
            "torch."
        ),
        "classifier_precision": str(parts.autocast_dtype or torch.float32).removeprefix("torch."),
        "generator_step_gflop": step_flops / 1e9,
        "generator_step_gflops": step_flops / 1e9 / phase_s["generator_step"],
    }


# ----- one setup and mode ------------------------------------------------------------------------------------------
def measure(setup_name: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    setup = SETUPS[setup_name]
    work = args.work / setup_name
    teacher_arch = TINY_TEACHER if args.tiny else setup.teacher_arch
    teacher = write_random_teacher(work / "teacher" / f"{setup.dataset}-{teacher_arch}.pt", teacher_arch, setup.dataset)
    data_root = args.data_root
    if setup.written_test_images:
        data_root = write_cifar100_test_split(work / "data", 64 if args.tiny else setup.written_test_images)
    run_dir = work / f"run-{mode.replace('+', '-')}"
    command = train_command(
        setup,
        mode,
        teacher=teacher,
        run_dir=run_dir,
        data_root=data_root,
        device=args.device,
        epochs=args.epochs,
        tiny=args.tiny,
        batch_size=args.batch_size,
    )
    print(f"{setup_name} {mode}: fastlrwa {command[3:]}", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "setup": setup_name,
        "mode": mode,
        "preset": setup.preset,
        "teacher_arch": teacher_arch,
        "train": run_train(command, run_dir),
    }
    saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else None
    if saved is not None:
        schedule = saved["config"]["schedule"]
        result.update(
            student_arch=saved["config"]["student"]["arch"],
            batch=schedule["batch_size"],
            steps_per_iteration=schedule["gen_steps"] + schedule["student_steps"],
            method=saved["config"]["method"],
        )
    for run in ("checkpoint.pt", "student.pt"):  # hundreds of MB at paper size, and not needed
        (run_dir / run).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    if args.train_only:
        return result
    if saved is None:
        result["harness"] = {"error": f"{run_dir / 'config.json'} was not written: fastlrwa train failed first"}
        return result
    print(f"{setup_name} {mode}: phase harness", file=sys.stderr, flush=True)
    try:
        result["harness"] = harness(run_dir, 2 if args.tiny else setup.timed_iterations, args.warmup_iterations)
    except Exception as error:  # reported with the rest of the results; the other runs go on
        result["harness"] = {"error": f"{type(error).__name__}: {error}"}
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"`fastlrwa train` end to end, {result['device']}, torch {result['torch']}, {result['date']}"
        + (" (--tiny sizes)" if result["tiny"] else "")
        + ".",
        "",
        "samples/s: generated samples per second of whole iterations (g + s steps of `batch`), train: the "
        "last epoch of `fastlrwa train`, harness: the same parts after warm-up. Phase shares are of an "
        "iteration timed with device synchronisation around each phase. Peak: CUDA "
        "`max_memory_allocated` of the last epoch (train) and of the timed iterations (harness); on a CPU "
        "the train process's peak RSS. Generator step GFLOP/s: its counted floating-point work over its median "
        "time, and that as a share of the matmul peak in the precision the generator computes in.",
        "",
        f"Matmul peak ({result['matmul_peak_size']}-square, best of 5, in the generators' precisions): "
        + (", ".join(f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in result["matmul_peak_gflops"].items()) or "—")
        + ".",
        "",
        "| setup | mode | precision: generator / classifiers | student | batch | samples/s train | samples/s harness "
        "| iteration ms | generator step | student batch | student update | other | generator step GFLOP/s | of peak "
        "| peak MiB train | peak MiB harness | train wall s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    problems = []
    for run in result["runs"]:
        train, measured = run["train"], run.get("harness", {})
        share = measured.get("phase_share", {})
        precision = measured.get("generator_precision")
        achieved = measured.get("generator_step_gflops")
        peak_gflops = result["matmul_peak_gflops"].get(precision) if precision else None
        peak_train = train.get("peak_memory_mib") if result["device_type"] == "cuda" else train.get("peak_rss_mib")
        lines.append(
            "| "
            + " | ".join(
                [
                    run["setup"],
                    run["mode"],
                    f"{precision} / {measured['classifier_precision']}" if precision else "—",
                    run.get("student_arch", "—"),
                    str(run.get("batch", "—")),
                    _fmt(train.get("samples_per_s"), ".0f"),
                    _fmt(measured.get("samples_per_s"), ".0f"),
                    _fmt(measured.get("iteration_s") and 1e3 * measured["iteration_s"], ".1f"),
                    *(
                        _fmt(share.get(phase) and 100 * share[phase], ".1f") + ("" if phase not in share else " %")
                        for phase in (*PHASES, "other")
                    ),
                    _fmt(achieved, ".1f"),
                    _fmt(achieved and peak_gflops and 100 * achieved / peak_gflops, ".0f") + (" %" if achieved else ""),
                    _fmt(peak_train, ".0f"),
                    _fmt(measured.get("peak_memory_mib"), ".0f"),
                    _fmt(train.get("wall_s"), ".1f"),
                ]
            )
            + " |"
        )
        for part, record in (("fastlrwa train", train), ("harness", measured)):
            if record.get("error"):
                problems.append(f"- {run['setup']} {run['mode']}, {part} failed: {record['error']}")
    return "\n".join(lines + ([""] + problems if problems else [])) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", nargs="+", choices=sorted(SETUPS), default=["digits", "fashion-mnist"])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODE_FLAGS), default=["default", "fp32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each `fastlrwa train` run (>= 3: one clean)")
    parser.add_argument(
        "--warmup-iterations",
        type=int,
        default=2,
        help="harness warm-up iterations before and after the first memory push",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="the training batch of every run (default: the preset's)"
    )
    parser.add_argument("--tiny", action="store_true", help="small networks and batch: a dry run in seconds")
    parser.add_argument("--train-only", action="store_true", help="only the `fastlrwa train` runs, no harness")
    parser.add_argument("--data-root", type=Path, default=None, help="where the presets' datasets are")
    parser.add_argument(
        "--work", type=Path, default=Path("runs") / "bench_trainer", help="teachers, written data and the runs' folders"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = [measure(setup, mode, args) for setup in args.setup for mode in args.modes]
    device = torch.device(args.device)
    # Only the precisions a generator computed in: a CPU without native bf16 emulates a bf16 matmul at well under
    # 1 GFLOP/s, minutes at 2048-square, for a peak no row is compared against.
    precisions = sorted(
        {run["harness"]["generator_precision"] for run in runs if "generator_precision" in run.get("harness", {})}
    )
    peak_size = 512 if args.tiny else 2048
    result = {
        "matmul_peak_size": peak_size,
        "matmul_peak_gflops": {
            precision: matmul_peak(device, getattr(torch, precision), size=peak_size) for precision in precisions
        },
        "device": device_description(args.device),
        "device_type": torch.device(args.device).type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tiny": args.tiny,
        "epochs": args.epochs,
        "runs": runs,
    }
    stem = args.out / (
        f"trainer_{'-'.join(args.setup)}_{result['device_type']}_"
        f"{'-'.join(mode.replace('+', '-') for mode in args.modes)}"
        + ("" if args.batch_size is None else f"_b{args.batch_size}")
        + ("_tiny" if args.tiny else "")
    )
    atomic_write_json(stem.with_suffix(".json"), result)
    table = markdown_table(result)
    atomic_write_text(stem.with_suffix(".md"), table)
    print(table)
    failed = any(run["train"].get("error") or run.get("harness", {}).get("error") for run in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
