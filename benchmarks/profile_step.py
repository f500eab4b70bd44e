"""Write a ``torch.profiler`` trace of one kind of student update for TensorBoard's PyTorch Profiler tab.

    python benchmarks/profile_step.py --kind lrwa-exact --out runs/profile
    tensorboard --logdir runs/profile        # then open the "PYTORCH_PROFILER" tab (torch-tb-profiler)

The step runs on the benchmark's problem (``--size small`` or ``paper``), the outer optimiser
step included, ``--wait`` + ``--warmup`` unprofiled calls first (compilation, allocator warm-up),
then ``--active`` profiled ones. Shapes and memory are recorded; ``--stack`` adds Python stacks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lrwa_step import LRWA_MODES, SIZES, fastlrwa_variant, make_problem  # noqa: E402

# kind -> (step kind, hvp, exact_method); the LRWA kinds are the benchmark's variants.
KINDS = {
    "plain": ("plain", "exact", "reverse"),
    "joint": ("joint", "exact", "reverse"),
    **{name: ("lrwa", hvp, method) for name, (hvp, method) in LRWA_MODES.items()},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--objective", choices=("paper", "official"), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="profile the compiled step")
    parser.add_argument("--wait", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--active", type=int, default=2)
    parser.add_argument("--stack", action="store_true", help="record Python stacks (larger trace)")
    parser.add_argument("--out", type=Path, default=Path("runs/profile"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    kind, hvp, exact_method = KINDS[args.kind]
    step = fastlrwa_variant(
        make_problem(SIZES[args.size], device), kind, args.objective, args.compile, hvp=hvp, exact_method=exact_method
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    worker = f"{args.kind}{'-compiled' if args.compile else ''}"
    cycle = schedule(wait=args.wait, warmup=args.warmup, active=args.active, repeat=1)
    with profile(
        activities=activities,
        schedule=cycle,
        on_trace_ready=tensorboard_trace_handler(str(args.out), worker_name=worker),
        record_shapes=True,
        profile_memory=True,
        with_stack=args.stack,
    ) as profiler:
        for _ in range(args.wait + args.warmup + args.active):
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            profiler.step()
    print(f"trace written to {args.out} (worker {worker}); open it with: tensorboard --logdir {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
