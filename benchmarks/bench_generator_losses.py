"""Share of a generator step spent in its loss head (JS + priors), to decide whether a fused prior kernel pays.

    python benchmarks/bench_generator_losses.py [--device cpu|cuda] [--repeats 10] [--out results.json]

For each setting it times, forward + backward, median over ``--repeats`` after two warm-up calls: the whole
generator step of the JS + priors objective (the trainer's ``GeneratorUpdate.step``: generator -> teacher ->
student -> loss -> backward into the generator -> Adam), and the loss head alone (``generator_loss`` on logits
and features that require grad, then backward to them). The head is O(N*C); the networks are
O(N*pixels*channels), so the share does not depend on the batch size much; the paper-size setting uses a small
batch to stay within CPU time. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replay import median_seconds  # noqa: E402

from fastlrwa.atomic_io import atomic_write_json  # noqa: E402
from fastlrwa.losses.generator_objectives import generator_loss  # noqa: E402
from fastlrwa.losses.options import GeneratorLossOptions  # noqa: E402
from fastlrwa.models import build_model  # noqa: E402
from fastlrwa.models.generator import build_generator  # noqa: E402
from fastlrwa.runtime import environment_versions  # noqa: E402
from fastlrwa.updates.generator_update import GeneratorUpdate  # noqa: E402

# name: teacher, student, classes, channels, image size, generator width, batch
SETTINGS = {
    "digits preset": ("lenet5", "lenet5_half", 10, 1, 32, 32, 64),
    "cifar100 paper nets": ("resnet34", "resnet18", 100, 3, 32, 128, 32),
}


def measure(name: str, device: torch.device, repeats: int) -> dict[str, object]:
    teacher_arch, student_arch, classes, channels, size, width, batch = SETTINGS[name]
    teacher = build_model(teacher_arch, classes, in_channels=channels, image_size=size).to(device).eval()
    student = build_model(student_arch, classes, in_channels=channels, image_size=size).to(device).train()
    generator = build_generator(latent_dim=100, channels=channels, image_size=size, width=width).to(device).train()
    for p in [*teacher.parameters(), *student.parameters()]:
        p.requires_grad_(False)
    weights = GeneratorLossOptions()
    update = GeneratorUpdate(
        generator,
        teacher,
        student,
        objective="js_priors",
        weights=weights,
        optimizer=torch.optim.Adam(generator.parameters(), lr=1e-3),
        autocast_dtype=None,
        scaler=torch.amp.GradScaler(device.type, enabled=False),
        compile=False,
    )
    z = torch.randn(batch, 100, device=device)

    with torch.no_grad():
        images = generator(z)
        t_logits, features = teacher(images, return_features=True)
        s_logits = student(images)
    head_inputs = [t.detach().clone().requires_grad_(True) for t in (t_logits, features, s_logits)]

    def head_only() -> None:
        loss, _ = generator_loss("js_priors", head_inputs[0], head_inputs[1], head_inputs[2], weights)
        loss.backward()

    whole = median_seconds(lambda: update.step(z), device, repeats)
    head = median_seconds(head_only, device, repeats)
    return {
        "setting": name,
        "teacher": teacher_arch,
        "student": student_arch,
        "classes": classes,
        "batch": batch,
        "generator_width": width,
        "step_s": whole,
        "loss_head_s": head,
        "loss_head_share": head / whole,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = [measure(name, device, args.repeats) for name in args.settings]
    print("| setting | batch | classes | generator step ms | loss head ms | share |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['setting']} ({r['teacher']} -> {r['student']}) | {r['batch']} | {r['classes']} | "
            f"{1e3 * r['step_s']:.2f} | {1e3 * r['loss_head_s']:.3f} | {100 * r['loss_head_share']:.2f} % |"
        )
    if args.out:
        atomic_write_json(
            Path(args.out),
            {
                "device": str(device),
                "threads": torch.get_num_threads(),
                "versions": environment_versions(device),
                "results": rows,
            },
        )


if __name__ == "__main__":
    main()
