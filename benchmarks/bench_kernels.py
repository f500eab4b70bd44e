"""Benchmark the fused loss kernels against torch eager and torch.compile of the same reference.

    python benchmarks/bench_kernels.py                 # on a CUDA machine: the whole sweep
    python benchmarks/bench_kernels.py --cpu-reference --rows 1024 --cols 100   # CPU: eager vs compile
    python benchmarks/bench_kernels.py --dtype bf16 --rows 4096 16384 --cols 100 1000 --modes forward+backward

Providers: ``torch`` (the reference from fastlrwa.kernels, eager), ``torch.compile`` (the same
reference compiled) and ``triton`` (``fused_*(backend="triton")``). Losses: MAE, JS (paper, T=1)
and JS (official, T=3); modes ``forward`` and ``forward+backward`` (both inputs need gradients).
On CUDA each case is timed with ``triton.testing.do_bench`` (L2 flushed between runs): median and
20th/80th percentiles. Bandwidth is against the bytes a loss must move at least: forward reads
both logit matrices (2·N·C elements); forward+backward also reads them again and writes both
gradients (6·N·C elements). It is compared with the device's copy bandwidth, measured here with
a 1 GiB device-to-device copy. The project's goal: forward+backward of the Triton kernels at
N >= 4096, C >= 100 reaches >= 70 % of copy bandwidth and >= 2x torch eager.

Results: rows appended to benchmarks/results/kernels.csv (device, torch and triton versions,
date); this run alone as kernels.json and kernels.md. Without a CUDA GPU the script says so and
measures nothing, unless --cpu-reference is given (torch eager vs torch.compile on this CPU).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from fastlrwa.atomic_io import atomic_write_json, atomic_write_text
from fastlrwa.kernels import backend as kernel_backend
from fastlrwa.kernels import fused_js, fused_mae, js_reference, mae_reference

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = (1024, 4096, 16384)
COLS = (10, 100, 200, 1000)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "forward+backward")
PROVIDERS = ("torch", "torch.compile", "triton")
# Elements moved per logit element: forward reads a and b; the backward reads them again and
# writes both gradients.
ELEMENT_TRAFFIC = {"forward": 2, "forward+backward": 6}
GOAL_FRACTION_OF_COPY, GOAL_SPEEDUP, GOAL_MIN_ROWS, GOAL_MIN_COLS = 0.70, 2.0, 4096, 100

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    name: str
    reference: LossFn
    fused: LossFn


LOSSES = (
    Loss("mae", mae_reference, lambda a, b: fused_mae(a, b, backend="triton")),
    Loss("js_paper", lambda a, b: js_reference(a, b), lambda a, b: fused_js(a, b, backend="triton")),
    Loss(
        "js_official",
        lambda a, b: js_reference(a, b, temperature=3.0, variant="official"),
        lambda a, b: fused_js(a, b, temperature=3.0, variant="official", backend="triton"),
    ),
)


@dataclass
class Result:
    date: str
    device: str
    torch_version: str
    triton_version: str
    loss: str
    mode: str
    provider: str
    dtype: str
    rows: int
    cols: int
    median_ms: float
    p20_ms: float
    p80_ms: float
    gb_per_s: float
    percent_of_copy_bandwidth: float | None
    speedup_vs_eager: float | None = None


def _timed_call(loss_fn: LossFn, a: torch.Tensor, b: torch.Tensor, mode: str) -> Callable[[], object]:
    if mode == "forward":

        def forward() -> object:
            with torch.no_grad():
                return loss_fn(a, b)

        return forward

    def forward_backward() -> object:
        return torch.autograd.grad(loss_fn(a, b), (a, b))

    return forward_backward


def _providers(loss: Loss, compile_cache: dict[str, LossFn], wanted: Sequence[str]) -> dict[str, LossFn]:
    """The implementations of ``loss`` in ``wanted``, in the order of PROVIDERS (eager first: the others' baseline)."""
    if "torch.compile" in wanted and loss.name not in compile_cache:
        compile_cache[loss.name] = torch.compile(loss.reference, dynamic=False)
    every = {"torch": loss.reference, "torch.compile": compile_cache.get(loss.name), "triton": loss.fused}
    return {name: every[name] for name in PROVIDERS if name in wanted}


def _cuda_quantiles_ms(call: Callable[[], object]) -> tuple[float, float, float]:
    from triton.testing import do_bench

    call()
    median, p20, p80 = do_bench(call, quantiles=[0.5, 0.2, 0.8])
    return median, p20, p80


def _cpu_quantiles_ms(call: Callable[[], object], repeats: int = 15) -> tuple[float, float, float]:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    deciles = statistics.quantiles(times, n=10)
    return statistics.median(times), deciles[1], deciles[7]


def copy_bandwidth_gb_per_s(device: torch.device) -> float:
    """Device-to-device copy of 1 GiB: bytes read plus bytes written per second."""
    from triton.testing import do_bench

    source = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    median_ms = do_bench(lambda: target.copy_(source), quantiles=[0.5])
    median_ms = median_ms[0] if isinstance(median_ms, (list, tuple)) else median_ms
    return 2 * source.numel() / (median_ms * 1e-3) / 1e9


def run_sweep(
    device: torch.device,
    dtype_name: str,
    rows_list: Sequence[int],
    cols_list: Sequence[int],
    providers: Sequence[str],
    copy_gb_per_s: float | None,
    device_name: str,
    modes: Sequence[str] = MODES,
) -> list[Result]:
    dtype = DTYPES[dtype_name]
    quantiles_ms = _cuda_quantiles_ms if device.type == "cuda" else _cpu_quantiles_ms
    versions = _versions()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    compile_cache: dict[str, LossFn] = {}
    results = []
    for loss in LOSSES:
        for rows in rows_list:
            for cols in cols_list:
                generator = torch.Generator(device=device).manual_seed(rows * 10_000 + cols)
                a = (torch.randn(rows, cols, device=device, generator=generator) * 3).to(dtype).requires_grad_()
                b = (torch.randn(rows, cols, device=device, generator=generator) * 3).to(dtype).requires_grad_()
                for mode in modes:
                    eager_ms = None
                    for provider, loss_fn in _providers(loss, compile_cache, providers).items():
                        median, p20, p80 = quantiles_ms(_timed_call(loss_fn, a, b, mode))
                        gb_per_s = ELEMENT_TRAFFIC[mode] * a.numel() * a.element_size() / (median * 1e-3) / 1e9
                        eager_ms = median if provider == "torch" else eager_ms
                        results.append(
                            Result(
                                date=date,
                                device=device_name,
                                torch_version=versions[0],
                                triton_version=versions[1],
                                loss=loss.name,
                                mode=mode,
                                provider=provider,
                                dtype=dtype_name,
                                rows=rows,
                                cols=cols,
                                median_ms=median,
                                p20_ms=p20,
                                p80_ms=p80,
                                gb_per_s=gb_per_s,
                                percent_of_copy_bandwidth=100 * gb_per_s / copy_gb_per_s if copy_gb_per_s else None,
                                speedup_vs_eager=eager_ms / median if eager_ms else None,
                            )
                        )
                        print(_line(results[-1]), flush=True)
    return results


def _versions() -> tuple[str, str]:
    if not kernel_backend.TRITON_AVAILABLE:
        return torch.__version__, "not installed"
    import triton

    return torch.__version__, triton.__version__


def _line(result: Result) -> str:
    percent = f"{result.percent_of_copy_bandwidth:5.1f}%" if result.percent_of_copy_bandwidth is not None else "   n/a"
    speedup = f"{result.speedup_vs_eager:5.2f}x" if result.speedup_vs_eager is not None else "    -"
    return (
        f"{result.loss:11s} {result.mode:16s} {result.provider:13s} N={result.rows:<6d} C={result.cols:<5d} "
        f"{result.median_ms:9.4f} ms [{result.p20_ms:.4f}, {result.p80_ms:.4f}] "
        f"{result.gb_per_s:8.1f} GB/s {percent} of copy  {speedup} vs eager"
    )


def goal_report(results: Sequence[Result]) -> list[str]:
    """One line per forward+backward Triton case in the goal's range: met or not, and why."""
    lines = []
    for result in results:
        in_range = result.rows >= GOAL_MIN_ROWS and result.cols >= GOAL_MIN_COLS
        if result.provider != "triton" or result.mode != "forward+backward" or not in_range:
            continue
        fraction = (result.percent_of_copy_bandwidth or 0.0) / 100
        speedup = result.speedup_vs_eager or 0.0
        met = fraction >= GOAL_FRACTION_OF_COPY and speedup >= GOAL_SPEEDUP
        lines.append(
            f"goal {'MET ' if met else 'MISS'} {result.loss} N={result.rows} C={result.cols}: "
            f"{100 * fraction:.1f}% of copy bandwidth (>= {100 * GOAL_FRACTION_OF_COPY:.0f}%), "
            f"{speedup:.2f}x eager (>= {GOAL_SPEEDUP:.0f}x)"
        )
    return lines


def write_results(results: Sequence[Result], out_dir: Path, stem: str, extra: dict[str, object]) -> None:
    """Append to ``kernels.csv``; this run alone as ``<stem>.json`` and ``<stem>.md``."""
    records = [asdict(result) for result in results]
    csv_path = out_dir / "kernels.csv"
    existing = csv_path.read_text() if csv_path.exists() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
    if not existing:
        writer.writeheader()
    writer.writerows(records)
    atomic_write_text(csv_path, existing + buffer.getvalue())
    atomic_write_json(out_dir / f"{stem}.json", {**extra, "results": records})
    atomic_write_text(out_dir / f"{stem}.md", markdown_table(results, extra))


def markdown_table(results: Sequence[Result], extra: dict[str, object]) -> str:
    header = ", ".join(f"{key}: {value}" for key, value in extra.items())
    lines = [
        f"# Fused loss kernels ({header})",
        "",
        "| loss | mode | provider | dtype | N | C | median ms | p20 ms | p80 ms | GB/s | % copy BW | x eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        percent = f"{r.percent_of_copy_bandwidth:.1f}" if r.percent_of_copy_bandwidth is not None else "n/a"
        speedup = f"{r.speedup_vs_eager:.2f}" if r.speedup_vs_eager is not None else "-"
        lines.append(
            f"| {r.loss} | {r.mode} | {r.provider} | {r.dtype} | {r.rows} | {r.cols} | {r.median_ms:.4f} | "
            f"{r.p20_ms:.4f} | {r.p80_ms:.4f} | {r.gb_per_s:.1f} | {percent} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS), help="batch sizes N")
    parser.add_argument("--cols", type=int, nargs="+", default=list(COLS), help="class counts C")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=PROVIDERS,
        default=list(PROVIDERS),
        help="which implementations to time (triton only on CUDA)",
    )
    parser.add_argument("--cpu-reference", action="store_true", help="time torch eager vs torch.compile on the CPU")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if "torch.compile" in args.providers:  # one compiled graph per shape, dtype and mode
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)

    if args.cpu_reference:
        device_name = f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        print(f"{device_name}: torch eager vs torch.compile only (Triton on CPU is the interpreter)")
        providers = [provider for provider in args.providers if provider != "triton"]
        results = run_sweep(
            torch.device("cpu"), args.dtype, args.rows, args.cols, providers, None, device_name, args.modes
        )
        write_results(results, args.out_dir, "kernels_cpu_reference", {"device": device_name})
        return 0

    if not torch.cuda.is_available():
        print(
            "no CUDA GPU on this machine: the kernel benchmark needs one, so no numbers were measured "
            "(--cpu-reference times torch eager vs torch.compile on the CPU)"
        )
        return 0

    device = torch.device("cuda")
    device_name = torch.cuda.get_device_name(device)
    copy_gb_per_s = copy_bandwidth_gb_per_s(device)
    print(f"{device_name}: device-to-device copy {copy_gb_per_s:.1f} GB/s")
    results = run_sweep(
        device, args.dtype, args.rows, args.cols, args.providers, copy_gb_per_s, device_name, args.modes
    )
    goals = goal_report(results)
    print("\n".join(goals) if goals else "no forward+backward case with N >= 4096 and C >= 100 in this sweep")
    write_results(
        results,
        args.out_dir,
        "kernels",
        {"device": device_name, "copy_gb_per_s": round(copy_gb_per_s, 1), "goal": goals},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
