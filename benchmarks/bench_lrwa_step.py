"""One student update, side by side: the MB-DFKD joint step, the authors' ``higher`` LRWA step, fastlrwa's modes.

Every variant is a full update including the outer optimiser step (fused SGD, lr 0.1, momentum 0.9,
wd 5e-4). Teacher logits of x_new are an input of every variant (the
generator step computes them anyway); the authors' approach also re-runs the teacher on the memory
batch, as their code does, while fastlrwa takes the logits stored with the memory samples.

Timings are interleaved (one call of each variant per round) and the median of ``--repeats`` rounds after
``--warmup`` is reported; the first call of each variant (its compilation, for a compiled one) is kept as
``first_call_s``. A variant that fails to build or to run its first call is reported with its error and left out
of the rounds; the others go on. ``--amp``: bf16 autocast as the trainer's ``--amp`` (fastlrwa's steps run their
inner step and Hessian-vector product in float32 regardless; the ``higher`` step runs whole under autocast, the
authors' code having no mixed precision). On CUDA the student is in channels_last, as the trainer keeps it.
FLOPs (``FlopCounterMode``) and the peak of live tensor bytes (:class:`LiveTensorBytes`) are counted for the
update alone on the ``meta`` device, so they are the same on every run and machine (a compiled variant shows the
counts of its eager graph). Peak memory of the whole update: on CUDA ``max_memory_allocated`` above what was
allocated before the call; on CPU the peak RSS above the RSS before the call, each variant in its own process.
The counts are of the float32 graph also under ``--amp`` (autocast has no ``meta`` device).

    python benchmarks/bench_lrwa_step.py --size small                 # CPU, ~94k-parameter CNN, 256+32
    python benchmarks/bench_lrwa_step.py --size paper --counts-only      # FLOPs and live tensors, seconds
    python benchmarks/bench_lrwa_step.py --size paper --counts-only --objective official --no-log-alignment
    python benchmarks/bench_lrwa_step.py --size paper --repeats 1 --warmup 1 --no-compile
    python benchmarks/bench_lrwa_step.py --device cuda --check-budgets  # the GPU CI job
    python benchmarks/bench_lrwa_step.py --device cuda --size paper --amp --objective official --no-counts
    python benchmarks/bench_lrwa_step.py --device cuda --size paper --amp --compile-only --variants joint+compile
        # compiles (fills Inductor's cache) and reports the first and second call only

Results: ``benchmarks/results/lrwa_<size>_<objective>_<device or counts>[_amp][_compile].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from fastlrwa.atomic_io import atomic_write_json, atomic_write_text
from fastlrwa.updates.options import JointOptions, LRWAOptions
from fastlrwa.updates.student_grads import install_grads, make_student_grads

HERE = Path(__file__).resolve().parent
BUDGETS = HERE / "budgets.json"
ALPHA = 0.9
WEIGHT_DECAY = 5e-4
BASELINE = "joint"
LRWA_MODES = {
    "lrwa-exact": ("exact", "forward"),
    "lrwa-exact-reverse": ("exact", "reverse"),
    "lrwa-fd": ("fd", "forward"),
    "lrwa-first-order": ("first_order", "forward"),
}


def small_cnn(num_classes: int) -> nn.Module:
    """The ~94k-parameter CNN of BENCHMARKS.md's small size: four conv-BN-ReLU blocks and a linear head."""

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32, 1),
        *block(32, 64, 2),
        *block(64, 64, 2),
        *block(64, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


@dataclass(frozen=True)
class Size:
    student: str
    teacher: str
    classes: int
    batch: int
    memory: int
    image: int = 32


SIZES = {
    "small": Size("small_cnn", "small_cnn", 10, 256, 32),
    "paper": Size("resnet18", "resnet34", 100, 512, 64),
    # Seconds on a CPU: for dry runs of the benchmark itself (benchmarks/gpu_check.sh --dry-run).
    "tiny": Size("small_cnn", "small_cnn", 10, 16, 4, image=16),
}
AMP_DTYPE = torch.bfloat16


def build(arch: str, classes: int) -> nn.Module:
    if arch == "small_cnn":
        return small_cnn(classes)
    from fastlrwa.models import build_model

    return build_model(arch, classes)


@dataclass
class Problem:
    """The models and batches every variant starts from (each variant trains its own student copy)."""

    student: nn.Module
    teacher: nn.Module
    x_new: torch.Tensor
    t_new: torch.Tensor
    x_mem: torch.Tensor
    t_mem: torch.Tensor


def make_problem(size: Size, device: torch.device, seed: int = 0) -> Problem:
    torch.manual_seed(seed)
    student = build(size.student, size.classes).to(device).train()
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)  # as the trainer keeps it on CUDA
    teacher = build(size.teacher, size.classes).to(device).eval()
    x_new = torch.randn(size.batch, 3, size.image, size.image, device=device)
    x_mem = torch.randn(size.memory, 3, size.image, size.image, device=device)
    with torch.no_grad():
        return Problem(student, teacher, x_new, teacher(x_new), x_mem, teacher(x_mem))


@dataclass
class Variant:
    """A student update that leaves its gradients on the student's parameters, and the outer optimiser."""

    update: Callable[[], None]
    optimizer: torch.optim.Optimizer

    def __call__(self) -> None:
        self.update()
        self.optimizer.step()


def outer_optimizer(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)


def fastlrwa_variant(
    problem: Problem,
    kind: str,
    objective: str,
    compiled: bool,
    hvp: str = "exact",
    exact_method: str = "forward",
    amp_dtype: Optional[torch.dtype] = None,
    log_alignment: bool = True,
) -> Variant:
    """A fastlrwa step on a private copy of the student."""
    student = copy.deepcopy(problem.student)
    params, buffers = dict(student.named_parameters()), dict(student.named_buffers())
    # log_alignment: the alignment probe on every step, as a trainer run with --align-every 1.
    lrwa = LRWAOptions(alpha=ALPHA, weight_decay=WEIGHT_DECAY, objective=objective, hvp=hvp, exact_method=exact_method)
    step = make_student_grads(
        kind,
        student,
        lrwa=lrwa,
        joint=JointOptions(objective),
        align=log_alignment,
        amp_dtype=amp_dtype,
        compile=compiled,
    )
    batches = (problem.x_new, problem.t_new) + (() if kind == "plain" else (problem.x_mem, problem.t_mem))

    def update() -> None:
        grads, _ = step(params, buffers, *batches)
        install_grads(params, grads)

    return Variant(update, outer_optimizer(student))


def higher_variant(problem: Problem, amp_dtype: Optional[torch.dtype] = None) -> Variant:
    """The authors' LRWA step: ``higher`` unrolls SGD(α, momentum 0.9, λ) once on MAE(x_new); the outer
    loss is MAE over cat(x_new, x_mem) at θ plus MAE(x_mem) at θ', the teacher re-run on x_mem.
    With ``amp_dtype`` the whole update runs under autocast."""
    import higher

    student = copy.deepcopy(problem.student)
    inner_optimizer = torch.optim.SGD(student.parameters(), lr=ALPHA, momentum=0.9, weight_decay=WEIGHT_DECAY)
    x_cat = torch.cat([problem.x_new, problem.x_mem])
    device_type = problem.x_new.device.type

    def update() -> None:
        student.zero_grad(set_to_none=True)
        with (
            torch.autocast(device_type, dtype=amp_dtype) if amp_dtype is not None else nullcontext(),
            higher.innerloop_ctx(student, inner_optimizer, copy_initial_weights=False) as (fmodel, diffopt),
        ):
            diffopt.step(F.l1_loss(fmodel(problem.x_new), problem.t_new))
            with torch.no_grad():
                t_mem = problem.teacher(problem.x_mem)
            # θ' first: after a call with params=..., higher 0.2.1 keeps using those parameters.
            loss_ret = F.l1_loss(fmodel(problem.x_mem), t_mem)
            loss_cat = F.l1_loss(fmodel(x_cat, params=fmodel.parameters(time=0)), torch.cat([problem.t_new, t_mem]))
            (loss_cat + loss_ret).backward()

    return Variant(update, outer_optimizer(student))


def variant_names(objective: str, compiled: bool) -> list[str]:
    names = [BASELINE, *LRWA_MODES]
    if objective == "official":
        names.insert(1, "higher")
    if compiled:
        names += [f"{name}+compile" for name in (BASELINE, *LRWA_MODES)]
    return names


def make_variant(
    name: str, problem: Problem, objective: str, amp_dtype: Optional[torch.dtype] = None, log_alignment: bool = True
) -> Variant:
    """``log_alignment``: whether the LRWA variants run the alignment probe (the trainer's default)."""
    base, compiled = name.removesuffix("+compile"), name.endswith("+compile")
    if base == "higher":
        return higher_variant(problem, amp_dtype)
    if base == BASELINE:
        return fastlrwa_variant(problem, "joint", objective, compiled, amp_dtype=amp_dtype)
    hvp, exact_method = LRWA_MODES[base]
    return fastlrwa_variant(
        problem,
        "lrwa",
        objective,
        compiled,
        hvp=hvp,
        exact_method=exact_method,
        amp_dtype=amp_dtype,
        log_alignment=log_alignment,
    )


def unavailable_variants(names: list[str]) -> dict[str, str]:
    """Variants that cannot run here, each with the reason (the authors' step needs ``higher``)."""
    if "higher" in names and importlib.util.find_spec("higher") is None:
        return {
            "higher": "skipped: the higher package is not installed (pip install higher==0.2.1, "
            "or carry its wheel: BENCHMARKS.md)"
        }
    return {}


def update_counts(name: str, size: Size, objective: str, log_alignment: bool = True) -> tuple[int, int]:
    """FLOPs and peak live tensor bytes of one update (no optimiser step) of ``name``'s eager form.

    Counted on the ``meta`` device: shapes only, nothing computed, the same figures as on any device.
    """
    problem = make_problem(size, torch.device("meta"))
    update = make_variant(name.removesuffix("+compile"), problem, objective, log_alignment=log_alignment).update
    with FlopCounterMode(display=False) as counter:
        update()
    with LiveTensorBytes() as tracker:
        update()
    return counter.get_total_flops(), tracker.peak


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storage alive between two ATen calls made under this mode.

    Every storage an op returns is counted once until it is freed; inputs that existed before the
    mode was entered are not counted. CPython frees by reference counting, so the figure is the
    same on every run: a deterministic stand-in for peak memory where allocator figures are not.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for key in [key for key, (ref, _) in self._live.items() if ref.expired()]:
            self.current -= self._live.pop(key)[1]
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage._cdata not in self._live:
                    self._live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_peak_bytes(run: Callable[[], None], device: torch.device) -> int:
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_peak_bytes_here(run: Callable[[], None]) -> int:
    """Peak RSS during ``run`` above the RSS before it (Linux: clear_refs resets the high-water mark)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status_kib("VmRSS")
    run()
    return (_proc_status_kib("VmHWM") - before) * 1024


def rss_peak_bytes_in_subprocess(name: str, args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--size",
        args.size,
        "--device",
        "cpu",
        "--objective",
        args.objective,
        "--threads",
        str(args.threads),
        "--rss-of",
        name,
        "--log-alignment" if args.log_alignment else "--no-log-alignment",
    ]
    command += ["--amp"] if args.amp else []
    # A fixed mmap threshold makes glibc return every large block on free, so memory kept from the
    # warm-up call is not silently reused and the measured peak covers the whole step.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return int(result.stdout.strip().splitlines()[-1])


def timed_call(run: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def build_variants(
    names: list[str], problem: Problem, objective: str, amp_dtype: Optional[torch.dtype], log_alignment: bool = True
) -> tuple[dict[str, Variant], dict[str, str]]:
    """The variants that could be built, and an error line for each that could not."""
    variants, errors = {}, {}
    for name in names:
        try:
            variants[name] = make_variant(name, problem, objective, amp_dtype, log_alignment)
        except Exception as error:  # a benchmark reports a broken variant and measures the others
            errors[name] = _error_line(error)
    return variants, errors


def first_calls(variants: dict[str, Variant], device: torch.device) -> tuple[dict[str, float], dict[str, str]]:
    """Each variant's first call (with its compilation, for a compiled one) in seconds, or its error."""
    seconds, errors = {}, {}
    for name, run in variants.items():
        try:
            seconds[name] = timed_call(run, device)
            print(f"first call of {name}: {seconds[name]:.2f} s", file=sys.stderr, flush=True)
        except Exception as error:  # e.g. a graph Dynamo cannot capture, or out of memory
            errors[name] = _error_line(error)
            print(f"{name} failed: {errors[name]}", file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return seconds, errors


def time_variants(
    variants: dict[str, Callable[[], None]], device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """``warmup`` untimed rounds, then ``repeats`` timed ones, each calling every variant once."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(warmup + repeats):
        for name, run in variants.items():
            elapsed = timed_call(run, device)
            if round_index >= warmup:
                times[name].append(elapsed)
        print(f"round {round_index + 1}/{warmup + repeats} done", file=sys.stderr, flush=True)
    return times


def baseline_of(name: str, names: list[str]) -> str:
    """Compiled variants are compared with the compiled joint step where it was measured."""
    compiled_baseline = f"{BASELINE}+compile"
    return compiled_baseline if name.endswith("+compile") and compiled_baseline in names else BASELINE


def ratios(values: dict[str, float | None]) -> dict[str, float | None]:
    names = list(values)
    result = {}
    for name, value in values.items():
        base = values.get(baseline_of(name, names))
        result[name] = None if value is None or not base else value / base
    return result


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    size = SIZES[args.size]
    amp_dtype = AMP_DTYPE if args.amp else None
    requested = [
        name
        for name in variant_names(args.objective, args.compile and not args.counts_only)
        if not args.variants or name in args.variants
    ]
    skipped = unavailable_variants(requested)
    for name, reason in skipped.items():
        print(f"{name}: {reason}", file=sys.stderr, flush=True)
    names = [name for name in requested if name not in skipped]
    errors: dict[str, str] = {}
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    times: dict[str, list[float]] = {name: [] for name in names}
    if not args.counts_only:
        problem = make_problem(size, device)
        variants, errors = build_variants(names, problem, args.objective, amp_dtype, args.log_alignment)
        first, call_errors = first_calls(variants, device)
        errors.update(call_errors)
        variants = {name: run for name, run in variants.items() if name not in errors}
        if args.compile_only:
            second = {name: timed_call(run, device) for name, run in variants.items()}
        else:
            times.update(time_variants(variants, device, max(args.warmup - 1, 0), args.repeats))
    measured = [name for name in names if name not in errors]
    median = {name: statistics.median(times[name]) if times[name] else None for name in names}

    flops: dict[str, float | None] = dict.fromkeys(names)
    live: dict[str, float | None] = dict.fromkeys(names)
    peak: dict[str, float | None] = dict.fromkeys(names)
    for name in measured:
        if not (args.no_counts or args.compile_only):
            flops[name], live[name] = update_counts(name, size, args.objective, args.log_alignment)
        if args.no_memory or args.counts_only or args.compile_only:
            pass
        elif device.type == "cuda":
            peak[name] = cuda_peak_bytes(variants[name], device)
        else:
            peak[name] = rss_peak_bytes_in_subprocess(name, args)
        print(f"measured {name}", file=sys.stderr, flush=True)

    columns = {"median_s": median, "flops": flops, "peak_bytes": peak, "peak_live_tensor_bytes": live}
    ratio_names = {
        "median_s": "time_ratio",
        "flops": "flops_ratio",
        "peak_bytes": "peak_memory_ratio",
        "peak_live_tensor_bytes": "live_memory_ratio",
    }
    rows = [
        {
            "variant": name,
            "baseline": baseline_of(name, names),
            "error": errors.get(name),
            "first_call_s": first.get(name),
            "second_call_s": second.get(name),
            "times_s": times[name],
            "min_s": min(times[name], default=None),
        }
        for name in names
    ]
    for column, values in columns.items():
        column_ratios = ratios(values)
        for row in rows:
            row[column] = values[row["variant"]]
            row[ratio_names[column]] = column_ratios[row["variant"]]
    return {
        "size": args.size,
        "shape": vars(size),
        "objective": args.objective,
        "amp": "bf16" if args.amp else None,
        "log_alignment": args.log_alignment,
        "device": device_description(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "counts_only": args.counts_only,
        "compile_only": args.compile_only,
        "skipped": skipped,
        "meta_overhead_mib": {
            figure: overhead_mib(rows, figure) for figure in ("peak_bytes", "peak_live_tensor_bytes")
        },
        "rows": rows,
    }


def overhead_mib(rows: list[dict], figure: str) -> dict[str, float]:
    """``figure`` of each LRWA variant minus its baseline's, in MiB (the paper's "about 40 MB")."""
    by_name = {row["variant"]: row for row in rows}
    return {
        row["variant"]: (row[figure] - by_name[row["baseline"]][figure]) / 2**20
        for row in rows
        if row["variant"].startswith("lrwa")
        and row[figure] is not None
        and by_name.get(row["baseline"], {}).get(figure) is not None
    }


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {torch.get_num_threads()} threads"


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(result: dict) -> str:
    if result["counts_only"]:
        method = "FLOP and live-tensor counts only."
    elif result.get("compile_only"):
        method = "first and second call only (--compile-only)."
    else:
        method = f"median of {result['repeats']} after {result['warmup']} warm-up (the first call included)."
    lines = [
        f"Size `{result['size']}` ({result['shape']['student']} student, batch {result['shape']['batch']} + "
        f"{result['shape']['memory']}), objective `{result['objective']}`"
        + (f", `--amp` ({result['amp']} autocast)" if result.get("amp") else "")
        + ("" if result.get("log_alignment", True) else ", LRWA without the alignment probe")
        + f", {result['device']}, torch {result['torch']}, {result['date']}; {method}",
        "",
    ]
    if result.get("compile_only"):
        lines += ["| variant | first call s | second call s | error |", "|---|---:|---:|---|"]
        lines += [
            f"| {row['variant']} | {_fmt(row['first_call_s'], '.2f')} | {_fmt(row['second_call_s'], '.3f')} | "
            f"{row['error'] or ''} |"
            for row in result["rows"]
        ]
        return "\n".join(lines) + "\n"
    lines += [
        "Ratios are against the joint (MB-DFKD) step of the same compile mode. First call: the variant's "
        "first step, its compilation included for a compiled one.",
        "",
        "| variant | median s | × joint | min s | first call s | GFLOP | × joint | peak MiB | × joint "
        "| live tensor MiB | × joint |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    row["variant"],
                    _fmt(row["median_s"], ".3f"),
                    _fmt(row["time_ratio"], ".2f"),
                    _fmt(row["min_s"], ".3f"),
                    _fmt(row.get("first_call_s"), ".2f"),
                    _fmt(row["flops"] and row["flops"] / 1e9, ".2f"),
                    _fmt(row["flops_ratio"], ".2f"),
                    _fmt(row["peak_bytes"] and row["peak_bytes"] / 2**20, ".0f"),
                    _fmt(row["peak_memory_ratio"], ".2f"),
                    _fmt(row["peak_live_tensor_bytes"] and row["peak_live_tensor_bytes"] / 2**20, ".0f"),
                    _fmt(row["live_memory_ratio"], ".2f"),
                ]
            )
            + " |"
        )
    problems = [f"- {row['variant']}: failed: {row['error']}" for row in result["rows"] if row.get("error")]
    problems += [f"- {name}: {reason}" for name, reason in result.get("skipped", {}).items()]
    if problems:
        lines += ["", *problems]
    labels = {"peak_bytes": "Peak memory", "peak_live_tensor_bytes": "Peak live tensor bytes"}
    for figure, overheads in result["meta_overhead_mib"].items():
        if overheads:
            listed = ", ".join(f"{name} {mib:+.0f} MiB" for name, mib in overheads.items())
            lines += ["", f"{labels[figure]} above the joint step (the paper claims about +40 MB): {listed}."]
    return "\n".join(lines) + "\n"


def budget_breaches(result: dict, budgets: dict) -> list[str]:
    """Each ratio of ``result`` above its budget, as one line naming the variant, figure and budget.

    The budgets of the result's size and objective: the ``deterministic`` ones apply everywhere; the
    ``cuda`` ones (time, allocator peak) only to a CUDA run, since CPU timings on shared machines
    are too noisy to gate on.
    """
    sections = ["deterministic", "cuda"] if result["device_type"] == "cuda" else ["deterministic"]
    rows = {row["variant"]: row for row in result["rows"]}
    budgeted = budgets["sizes"].get(result["size"], {}).get(result["objective"], {})
    breaches = []
    for section in sections:
        for figure, limits in budgeted.get(section, {}).items():
            for variant, limit in limits.items():
                value = rows.get(variant, {}).get(figure)
                if value is not None and value > limit:
                    breaches.append(f"{variant}: {figure} {value:.2f} > budget {limit} ({section})")
    return breaches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--objective", choices=("paper", "official"), default="paper")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True, help="also time the compiled variants"
    )
    parser.add_argument("--variants", nargs="+", help="only these variants (names as in the table)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast, as the trainer's --amp")
    parser.add_argument(
        "--log-alignment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the LRWA variants run the alignment probe, as the trainer does by default (the authors' step has none)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument(
        "--no-counts",
        action="store_true",
        help="skip the FLOP and live-tensor counts (deterministic: see benchmarks/results)",
    )
    parser.add_argument(
        "--compile-only",
        action="store_true",
        help="only the first and second call of each variant (fills the compile caches)",
    )
    parser.add_argument(
        "--counts-only",
        action="store_true",
        help="only the FLOP and live-tensor counts (meta device, seconds even at --size paper)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--check-budgets",
        action="store_true",
        help=f"exit 1 when a ratio exceeds {BUDGETS.name} (time and CUDA memory only on CUDA)",
    )
    parser.add_argument("--rss-of", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_of:
        problem = make_problem(SIZES[args.size], torch.device("cpu"))
        run = make_variant(args.rss_of, problem, args.objective, AMP_DTYPE if args.amp else None, args.log_alignment)
        run()  # optimiser state, compiled graph and allocator caches exist before the measured call
        print(rss_peak_bytes_here(run))
        return 0
    result = measure(args)
    kind = "counts" if args.counts_only else result["device_type"]
    suffix = ("_amp" if args.amp and not args.counts_only else "") + ("_compile" if args.compile_only else "")
    suffix += "" if args.log_alignment else "_no_alignment"
    stem = args.out / f"lrwa_{args.size}_{args.objective}_{kind}{suffix}"
    atomic_write_json(stem.with_suffix(".json"), result)
    table = markdown_table(result)
    atomic_write_text(stem.with_suffix(".md"), table)
    print(table)
    if args.check_budgets:
        breaches = budget_breaches(result, json.loads(BUDGETS.read_text()))
        for line in breaches:
            print(f"budget exceeded: {line}", file=sys.stderr)
        return 1 if breaches else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
