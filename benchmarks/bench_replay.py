"""Time the replay memories' per-step calls: ring push/sample and a generative-replay VAE step.

    python benchmarks/bench_replay.py [--device cpu|cuda] [--batch 512] [--teacher linear|resnet34]
                                      [--repeats 20] [--out results.json]

The ring uses the authors' geometry (10 slots x 64 samples); ``--budget-mb`` below its size puts
it in the pinned host tier on CUDA. The VAE step includes the teacher's forward and backward on
the reconstructions: ``--teacher linear`` isolates the VAE's own cost, ``resnet34`` is the
paper's teacher. Times are per call, median over ``--repeats`` after two warm-up calls.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from fastlrwa.atomic_io import atomic_write_json
from fastlrwa.models import build_model
from fastlrwa.replay import VAE, GenerativeReplay, ReplayRing


def median_seconds(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def teacher_for(name: str, classes: int, device: torch.device) -> nn.Module:
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, classes)).to(device)
    return build_model(name, classes).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=512, help="generated batch size (VAE step)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--teacher", default="linear", help="linear, or a registered classifier such as resnet34")
    parser.add_argument("--budget-mb", type=float, default=None, help="ring device budget (CUDA host tier)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    images = torch.randn(args.batch, 3, 32, 32, device=device)
    teacher = teacher_for(args.teacher, args.classes, device).eval()
    with torch.no_grad():
        logits = teacher(images)

    budget = None if args.budget_mb is None else int(args.budget_mb * 2**20)
    ring = ReplayRing(10, 64, (3, 32, 32), args.classes, device, device_budget_bytes=budget)
    for _ in range(10):
        ring.push(images, logits)
    replay = GenerativeReplay(VAE(3, 32), teacher, device=device, replay_batch=64)

    results = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "teacher": args.teacher,
        "ring_host_tier": ring.host_tier,
        "ring_storage_mb": ring.storage_bytes / 2**20,
        "ring_push_s": median_seconds(lambda: ring.push(images, logits), device, args.repeats),
        "ring_sample_s": median_seconds(ring.sample, device, args.repeats),
        "vae_observe_s": median_seconds(lambda: replay.observe(images, logits), device, args.repeats),
        "vae_sample_s": median_seconds(replay.sample, device, args.repeats),
    }
    for key, value in results.items():
        print(f"{key:>18}: {value:.6g}" if isinstance(value, float) else f"{key:>18}: {value}")
    if args.out:
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
