"""The ``fastlrwa`` command line: maps flags onto the typed configs and calls one command each.

Errors the user can fix (``fastlrwa.errors.UserFacingError``) end as one ``error: ...`` line on
stderr and the error's exit code; no traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

import click

from fastlrwa import __version__
from fastlrwa.errors import UserFacingError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserFacingError as error:
            # Under torchrun every rank fails together with the same error: rank 0 alone prints it.
            if os.environ.get("RANK", "0") == "0":
                click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="fastlrwa")
def cli() -> None:
    """fastlrwa: fast data-free knowledge distillation (LRWA, CVPR 2023, and the methods it is compared with)."""


# (flag, dotted config path, click type, help) for `train`; a flag left out keeps the preset's value.
_TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--method", "method", click.Choice(["dafl", "dfad", "dfq", "dfkd", "mb-dfkd", "pre-dfkd", "lrwa-mb", "lrwa-gr"]),
     "distillation method (lrwa-mb = paper's Ours-1, lrwa-gr = Ours-2)"),
    ("--dataset", "data.dataset", str, "dataset the teacher was trained on (test set used for evaluation)"),
    ("--data-root", "data.data_root", str, "folder holding the datasets"),
    ("--teacher", "teacher.path", str, "teacher checkpoint (default: cached teacher, pretrained on first use)"),
    ("--teacher-arch", "teacher.arch", str, "teacher architecture for a bare state_dict checkpoint"),
    ("--student", "student.arch", str, "student architecture"),
    ("--epochs", "schedule.epochs", int, "epochs E"),
    ("--iters-per-epoch", "schedule.iters_per_epoch", int, "iterations per epoch I"),
    ("--gen-steps", "schedule.gen_steps", int, "generator steps per iteration g"),
    ("--student-steps", "schedule.student_steps", int, "student steps per iteration s"),
    ("--batch-size", "schedule.batch_size", int, "generated batch size"),
    ("--lr-student", "student.lr", float, "student SGD learning rate"),
    ("--momentum", "student.momentum", float, "student SGD momentum"),
    ("--weight-decay", "student.weight_decay", float, "student weight decay"),
    ("--lr-schedule", "student.schedule", click.Choice(["cosine", "constant"]), "student learning-rate schedule"),
    ("--student-init", "student.init", click.Choice(["layer_default", "kaiming"]),
     "student initialisation: each layer's PyTorch default (the authors') or Kaiming-normal"),
    ("--lr-generator", "generator.lr", float, "generator Adam learning rate"),
    ("--latent-dim", "generator.latent_dim", int, "generator latent size"),
    ("--generator-width", "generator.width", int, "channels of the generator's first conv (paper: 128)"),
    ("--lr-inner", "lrwa.alpha", float, "LRWA inner step size alpha"),
    ("--inner-weight-decay", "lrwa.weight_decay", float, "LRWA inner-step weight decay lambda"),
    ("--lrwa-objective", "lrwa.objective", click.Choice(["official", "paper", "released"]),
     "LRWA outer objective: official (eq. 6, the authors' outer loss on cat(new, memory)), paper (eq. 6 as "
     "written), released (what the authors' released code computes: equals mb-dfkd with --joint-objective "
     "official, no meta-gradient; see README)"),
    ("--hvp", "lrwa.hvp", click.Choice(["exact", "fd", "first_order"]), "LRWA Hessian-vector product mode"),
    ("--exact-method", "lrwa.exact_method", click.Choice(["auto", "forward", "reverse"]),
     "exact HVP by forward-over-reverse (less memory) or reverse-over-reverse"),
    ("--js-variant", "loss.js_variant", click.Choice(["official", "paper"]), "Jensen-Shannon form"),
    ("--js-temperature", "loss.js_temperature", float, "softmax temperature of the JS term"),
    ("--w-adv", "loss.adv", float, "weight of the adversarial term"),
    ("--w-oh", "loss.oh", float, "weight of the one-hot prior L_OH"),
    ("--w-act", "loss.a", float, "weight of the activation prior L_A (gamma)"),
    ("--w-ie", "loss.ie", float, "weight of the batch-entropy prior L_EM (delta)"),
    ("--w-bn", "loss.bn", float, "weight of DFQ's BatchNorm-statistics loss"),
    ("--entropy-log-base", "loss.entropy_log_base", float, "log base of L_EM (authors: 10)"),
    ("--memory-slots", "replay.slots", int, "memory-bank capacity in slots"),
    ("--memory-slot-size", "replay.slot_size", int, "samples per memory slot"),
    ("--memory-push-every", "replay.push_every", int, "push to the memory bank every N epochs"),
    ("--memory-budget-mb", "replay.device_budget_mb", float, "device memory for the bank; beyond it a pinned host tier"),
    ("--joint-objective", "replay.joint_objective", click.Choice(["official", "paper"]),
     "replay baselines: one forward on cat(new, memory) or a sum of two losses"),
    ("--vae-lr", "replay.vae_lr", float, "generative replay: VAE learning rate"),
    ("--vae-latent", "replay.vae_latent", int, "generative replay: VAE latent size"),
    ("--vae-kl-weight", "replay.vae_kl_weight", float, "generative replay: KL weight"),
    ("--vae-logit-weight", "replay.vae_logit_weight", float, "generative replay: teacher-logit reconstruction weight"),
    ("--replay-batch", "replay.replay_batch", int, "generative replay: samples per replay batch"),
    ("--out", "runtime.out", str, "run directory (config, metrics, checkpoints, TensorBoard)"),
    ("--seed", "runtime.seed", int, "random seed"),
    ("--device", "runtime.device", str, "auto, cpu, cuda or cuda:N"),
    ("--eval-batch-size", "runtime.eval_batch_size", int, "test-set evaluation batch size"),
    ("--stop-after", "runtime.stop_after", int,
     "stop after this many epochs with a checkpoint (the schedule still spans --epochs); continue with --resume"),
]


def _flag_options(table: list[tuple[str, str, Any, str]]) -> Callable:
    def decorate(func: Callable) -> Callable:
        for flag, path, kind, text in reversed(table):
            func = click.option(flag, path.replace(".", "__"), type=kind, default=None, help=text)(func)
        return func

    return decorate


def _overrides(kwargs: dict[str, Any], table: list[tuple[str, str, Any, str]]) -> dict[str, Any]:
    return {path: kwargs[path.replace(".", "__")] for _, path, _, _ in table if kwargs[path.replace(".", "__")] is not None}


def _amp_option(func: Callable) -> Callable:
    return click.option(
        "--amp", "amp", flag_value="bf16", default=None,
        help="mixed precision: bf16 autocast (CPU and CUDA); see --amp-dtype",
    )(click.option("--amp-dtype", type=click.Choice(["bf16", "fp16"]), default=None,
                   help="autocast dtype for --amp (fp16 uses a GradScaler, CUDA only)")(func))


def _amp_mode(amp: str | None, amp_dtype: str | None) -> str | None:
    if amp_dtype is not None:
        return amp_dtype
    return amp


@cli.command()
@click.option("--preset", default=None, help="named config: digits (default), fashion-mnist, svhn, cifar10, cifar100, tiny-imagenet")
@_flag_options(_TRAIN_FLAGS)
@_amp_option
@click.option("--compile/--no-compile", "compile_", default=None, help="compile the student update with torch.compile")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--force", is_flag=True, help="start afresh in an --out that holds a different run (its files are replaced)")
@click.option("--no-progress", is_flag=True, help="no live progress bar (one line per epoch instead)")
@click.option("--trust-pickle", is_flag=True, help="allow a teacher file that is a pickled module (runs its code!)")
def train(preset: str | None, amp: str | None, amp_dtype: str | None, compile_: bool | None, resume: bool,
          force: bool, no_progress: bool, trust_pickle: bool, **flags: Any) -> None:
    """Distil a teacher into a student without data. With no arguments: the digits preset, end to end."""
    from fastlrwa.commands.train import run_train
    from fastlrwa.config.presets import train_config

    overrides = _overrides(flags, _TRAIN_FLAGS)
    mode = _amp_mode(amp, amp_dtype)
    if mode is not None:
        overrides["runtime.amp"] = mode
    if compile_ is not None:
        overrides["runtime.compile"] = compile_
    if no_progress:
        overrides["runtime.progress"] = False
    if trust_pickle:
        overrides["teacher.trust_pickle"] = True
    config = train_config(preset, overrides)
    run_train(config, resume=resume, force=force, explicit=set(overrides))


@cli.command()
@click.option("--dataset", required=True, help="dataset to train the teacher on")
@click.option("--arch", default=None, help="architecture (default: the dataset's recipe)")
@click.option("--out", default=None, help="output folder for model.pt and metrics.json")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--data-root", default=None)
@click.option("--download", is_flag=True, default=None, help="let torchvision download the dataset (needs internet)")
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None)
@_amp_option
@click.option("--compile/--no-compile", "compile_", default=None)
@click.option("--no-progress", is_flag=True)
@click.option("--loader", type=click.Choice(["torch", "dali"]), default="torch", show_default=True,
              help="torch: the split held on the device; dali: an NVIDIA DALI pipeline (pip install 'fastlrwa[dali]')")
def pretrain(dataset: str, amp: str | None, amp_dtype: str | None, compile_: bool | None, no_progress: bool,
             loader: str, **flags: Any) -> None:
    """Train a teacher with the dataset's recipe (SGD + momentum, cosine; crop + flip where standard)."""
    from fastlrwa.commands.pretrain import run_pretrain
    from fastlrwa.distributed import DistributedContext
    from fastlrwa.config.presets import pretrain_config

    overrides = {key: value for key, value in flags.items() if value is not None}
    mode = _amp_mode(amp, amp_dtype)
    if mode is not None:
        overrides["amp"] = mode
    if compile_ is not None:
        overrides["compile"] = compile_
    if no_progress:
        overrides["progress"] = False
    overrides["loader"] = loader
    config = pretrain_config(dataset, overrides)
    with DistributedContext.from_environment(config.device) as context:
        run_pretrain(config, context)


@cli.command()
@click.option("--checkpoint", required=True, help="model file (OUT/model.pt of pretrain, RUN/student.pt of train, or a state_dict)")
@click.option("--dataset", required=True)
@click.option("--arch", default=None, help="architecture, for a bare state_dict")
@click.option("--data-root", default=None)
@click.option("--device", default="auto")
@click.option("--batch-size", type=int, default=1024)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--trust-pickle", is_flag=True, help="allow a pickled module (runs its code!)")
@click.option("--loader", type=click.Choice(["torch", "dali"]), default="torch", show_default=True,
              help="read the test split with torch or decode it with NVIDIA DALI (pip install 'fastlrwa[dali]')")
def evaluate(checkpoint: str, dataset: str, arch: str | None, data_root: str | None, device: str, batch_size: int,
             as_json: bool, trust_pickle: bool, loader: str) -> None:
    """Test accuracy and per-class accuracy of a model."""
    from fastlrwa.commands.evaluate import run_evaluate

    run_evaluate(checkpoint, dataset, arch=arch, data_root=data_root, device=device, batch_size=batch_size,
                 as_json=as_json, trust_pickle=trust_pickle, loader=loader)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_md", default=None, help="write the markdown table here")
@click.option("--csv", "out_csv", default=None, help="write a CSV here")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--plot", default=None, help="draw Figure 4 (accuracy and cumulative mean per epoch) into this image (.png, .pdf, .svg)")
@click.option("--compare", default=None, metavar="BASELINE",
              help="compare every setting with a baseline: a method (mb-dfkd), key=value (generator.lr=0.001) or both "
                   "(mb-dfkd,generator.lr=0.001); default: settings that differ only in the method, pairwise")
@click.option("--equal-time", is_flag=True, help="also compare the runs cut at the same cumulative training time")
@click.option("--time-budget", type=float, default=None, metavar="SECONDS",
              help="training time for --equal-time (default: the shortest compared run's total)")
@click.option("--compare-csv", "out_compare_csv", default=None,
              help="write the comparisons (one row per quantity) as CSV here")
def report(run_dirs: tuple[str, ...], out_md: str | None, out_csv: str | None, as_json: bool, plot: str | None,
           compare: str | None, equal_time: bool, time_budget: float | None, out_compare_csv: str | None) -> None:
    """Table 1 of the paper for one or more run directories: mean/variance past each percentile, best accuracy;
    for settings with >= 2 seeds, 95 % Welch and bootstrap intervals of their differences."""
    from fastlrwa.commands.report import run_report

    run_report(list(run_dirs), out_md=out_md, out_csv=out_csv, as_json=as_json, plot=plot, compare=compare,
               equal_time=equal_time, time_budget_s=time_budget, out_compare_csv=out_compare_csv)


@cli.command()
@click.option("--preset", default=None, help="named config every run starts from (as for train; default: digits)")
@click.option("--methods", default=None, metavar="M1,M2",
              help="methods to run, comma-separated (default: the preset's)")
@click.option("--seeds", default="0", show_default=True, help="seeds: a list and/or ranges, e.g. 0-4 or 0,1,7")
@click.option("--set", "axes", multiple=True, metavar="KEY=V1,V2",
              help="a grid axis: a dotted config key with a train flag (generator.lr=1e-3,3e-3); repeat for more axes")
@click.option("--fix", "fixed", multiple=True, metavar="KEY=VALUE",
              help="an override every run gets (schedule.epochs=10); not part of the run directories' names")
@click.option("--root", default=None, help="folder of the sweep's runs and tables (default: sweeps/PRESET)")
@click.option("--jobs", type=int, default=None, help="runs at once (default: one per CPU core / per visible GPU)")
@click.option("--threads", type=int, default=None, help="CPU threads per run (default: 1 on CPU)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="where the runs train; cuda spreads them over the visible GPUs")
@click.option("--resume", is_flag=True, help="continue runs that were interrupted (finished runs are always skipped)")
@click.option("--dry-run", is_flag=True,
              help="print the train command of every run still to do (e.g. for a SLURM array)")
@click.option("--compare", default=None, metavar="BASELINE", help="baseline of the final comparisons, as for report")
def sweep(preset: str | None, methods: str | None, seeds: str, axes: tuple[str, ...], fixed: tuple[str, ...],
          root: str | None, jobs: int | None, threads: int | None, device: str, resume: bool, dry_run: bool,
          compare: str | None) -> None:
    """Run a grid of methods x seeds x --set values as parallel train runs; skip finished runs, write Table 1
    with 95 % intervals of the differences."""
    from fastlrwa.commands.sweep import SweepOptions, run_sweep
    from fastlrwa.commands.sweep_grid import Grid
    from fastlrwa.commands.train_argv import TrainArgv

    train_argv = TrainArgv.of(train)
    grid = Grid.parse(preset=preset, methods=methods, seeds=seeds, axes=axes, fixed=fixed, root=root,
                      train_argv=train_argv)
    run_sweep(grid, SweepOptions(jobs=jobs, threads=threads, device=device, resume=resume, dry_run=dry_run,
                                 compare=compare), train_argv)


@cli.command()
@click.option("--checkpoint", required=True, help="student or teacher model file (RUN/student.pt, OUT/model.pt)")
@click.option("--out", required=True, help="folder for model.pt2 (AOTInductor package) and meta.json")
@click.option("--batch", type=int, default=None, help="fix the batch size (default: any batch size)")
@click.option("--device", default="cpu", help="compile for cpu or cuda")
@click.option("--arch", default=None, help="architecture, for a bare state_dict")
@click.option("--trust-pickle", is_flag=True, help="allow a pickled module (runs its code!)")
def export(checkpoint: str, out: str, batch: int | None, device: str, arch: str | None, trust_pickle: bool) -> None:
    """Export a model for C++ inference: torch.export + AOTInductor, BatchNorm folded (see README)."""
    from fastlrwa.commands.export import run_export

    run_export(checkpoint, out, trust_pickle=trust_pickle, batch=batch, device=device, arch=arch)


def main() -> None:
    # Library code warns through logging (e.g. a crash-cut metrics line); show it like the error lines.
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    cli(prog_name="fastlrwa")


if __name__ == "__main__":
    main()
