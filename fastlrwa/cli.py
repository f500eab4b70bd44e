"""The ``fastlrwa`` command line: maps flags onto the typed configs and calls one command each.

Errors the user can fix (``fastlrwa.errors.UserFacingError``) end as one ``error: ...`` line on
stderr and the error's exit code; no traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import Any, Callable, get_args

import click

from fastlrwa import __version__
from fastlrwa.config.methods import METHODS
from fastlrwa.config.presets import DEFAULT_TRAIN_PRESET, PRETRAIN_PRESETS, TRAIN_PRESETS, train_config
from fastlrwa.config.schema import AmpMode, PretrainConfig, TrainConfig, field_type, to_dict
from fastlrwa.cpu_runtime import configure_thread_waiting, keep_freed_memory
from fastlrwa.data.catalog import DATASET_NAMES
from fastlrwa.errors import Interrupted, UserFacingError
from fastlrwa.models.names import CLASSIFIER_NAMES
from fastlrwa.options import choices_of, literal_choices

# Everything imported above is torch-free: torch, torchvision and scikit-learn (~5 s together) are imported by
# a command once its input has been checked, so a typo is answered in about a second.


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Where a command has no Ctrl-C handling of its own (loading, compiling): the same line and code.
            return self._fail(Interrupted("stopped by Ctrl-C"))
        except UserFacingError as error:
            return self._fail(error)

    @staticmethod
    def _fail(error: UserFacingError) -> None:
        # Under torchrun every rank fails together with the same error: rank 0 alone prints it.
        if os.environ.get("RANK", "0") == "0":
            click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="fastlrwa")
def cli() -> None:
    """fastlrwa: fast data-free knowledge distillation (LRWA, CVPR 2023, and the methods it is compared with)."""


_LOADERS = list(choices_of(PretrainConfig, "loader"))
_ARCH_CHOICES = f"{', '.join(CLASSIFIER_NAMES)}, or a torchvision classification model name"
_DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
_DATA_ROOT_HELP = (
    "folder holding the datasets (default: $FASTLRWA_DATA, else ~/.cache/fastlrwa/data; digits needs "
    "none, Fashion-MNIST is also found in /usr/share/datasets/fashion-mnist)"
)

# (flag, dotted config path, click type, help) for `train`; a flag left out keeps the preset's value. A type of
# None is the field's own (``_option_type``): a Literal field's choices come from its Literal.
_TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    (
        "--method",
        "method",
        click.Choice(list(METHODS)),
        "distillation method (lrwa-mb = paper's Ours-1, lrwa-gr = Ours-2)",
    ),
    (
        "--dataset",
        "data.dataset",
        click.Choice(DATASET_NAMES),
        "dataset the teacher was trained on (test set used for evaluation)",
    ),
    ("--data-root", "data.data_root", None, _DATA_ROOT_HELP),
    (
        "--test-data",
        "data.test_data",
        None,
        "DIR or FILE.npz: a labelled test set of your own in place of the dataset's: an ImageFolder tree (a folder "
        "of images per class) or numpy arrays x (raw pixels) and y (labels), normalised as the teacher was",
    ),
    (
        "--teacher",
        "teacher.path",
        None,
        "teacher file: a fastlrwa model file, a state_dict (with --teacher-arch or --teacher-factory), a TorchScript "
        "file (torch.jit.save) or a torch.export program (torch.export.save), told apart by content (default: the "
        "dataset's cached teacher in ~/.cache/fastlrwa/teachers, or $FASTLRWA_CACHE/teachers, trained on first use)",
    ),
    ("--teacher-arch", "teacher.arch", None, f"teacher architecture, for a bare state_dict: {_ARCH_CHOICES}"),
    (
        "--teacher-factory",
        "teacher.factory",
        None,
        "MODULE_OR_FILE.py:CALLABLE building your own nn.Module, whose state_dict --teacher holds (weights only); "
        "this imports and runs your code: pass it only for code you trust",
    ),
    (
        "--teacher-mean",
        "teacher.mean",
        None,
        "M[,M,...]: the per-channel mean a teacher from outside fastlrwa was trained with, as torchvision's "
        "Normalize on pixels in [0, 1] (default: the dataset's)",
    ),
    ("--teacher-std", "teacher.std", None, "S[,S,...]: its per-channel std, as for --teacher-mean"),
    ("--student", "student.arch", None, f"student architecture: {_ARCH_CHOICES}"),
    ("--epochs", "schedule.epochs", None, "epochs E"),
    ("--iters-per-epoch", "schedule.iters_per_epoch", None, "iterations per epoch I"),
    ("--gen-steps", "schedule.gen_steps", None, "generator steps per iteration g"),
    ("--student-steps", "schedule.student_steps", None, "student steps per iteration s"),
    ("--batch-size", "schedule.batch_size", None, "generated batch size"),
    ("--lr-student", "student.lr", None, "student SGD learning rate"),
    ("--momentum", "student.momentum", None, "student SGD momentum"),
    ("--weight-decay", "student.weight_decay", None, "student weight decay"),
    ("--lr-schedule", "student.schedule", None, "student learning-rate schedule"),
    (
        "--student-init",
        "student.init",
        None,
        "student initialisation: each layer's PyTorch default (the authors') or Kaiming-normal",
    ),
    ("--lr-generator", "generator.lr", None, "generator Adam learning rate"),
    ("--latent-dim", "generator.latent_dim", None, "generator latent size"),
    ("--generator-width", "generator.width", None, "channels of the generator's first conv (paper: 128)"),
    ("--lr-inner", "lrwa.alpha", None, "LRWA inner step size alpha"),
    ("--inner-weight-decay", "lrwa.weight_decay", None, "LRWA inner-step weight decay lambda"),
    (
        "--lrwa-objective",
        "lrwa.objective",
        None,
        "LRWA outer objective: official (eq. 6, the authors' outer loss on cat(new, memory)), paper (eq. 6 as "
        "written), released (what the authors' released code computes: equals mb-dfkd with --joint-objective "
        "official, no meta-gradient; see README)",
    ),
    ("--hvp", "lrwa.hvp", None, "LRWA Hessian-vector product mode"),
    (
        "--exact-method",
        "lrwa.exact_method",
        None,
        "exact HVP by reverse-over-reverse (default: fewer FLOPs and less memory) or forward-over-reverse",
    ),
    (
        "--align-every",
        "lrwa.align_every",
        None,
        "log the LRWA gradient alignment grad_cos (one more forward/backward on the memory batch) on every N-th "
        "student step of an epoch; 0: never",
    ),
    (
        "--grad-norm-every",
        "diagnostics.grad_norm_every",
        None,
        "log the gradient norm of each generator-loss term (one more backward per term) on every N-th generator "
        "step of an epoch; 0: never",
    ),
    (
        "--sample-grid",
        "diagnostics.sample_grid",
        None,
        "generated samples (from fixed latents) drawn into a TensorBoard image each epoch; 0: none",
    ),
    ("--js-variant", "loss.js_variant", None, "Jensen-Shannon form"),
    ("--js-temperature", "loss.js_temperature", None, "softmax temperature of the JS term"),
    ("--w-adv", "loss.adv", None, "weight of the adversarial term"),
    ("--w-oh", "loss.oh", None, "weight of the one-hot prior L_OH"),
    ("--w-act", "loss.a", None, "weight of the activation prior L_A (gamma)"),
    ("--w-ie", "loss.ie", None, "weight of the batch-entropy prior L_EM (delta)"),
    ("--w-bn", "loss.bn", None, "weight of DFQ's BatchNorm-statistics loss"),
    ("--entropy-log-base", "loss.entropy_log_base", None, "log base of L_EM (authors: 10)"),
    ("--memory-slots", "replay.slots", None, "memory-bank capacity in slots"),
    ("--memory-slot-size", "replay.slot_size", None, "samples per memory slot"),
    ("--memory-push-every", "replay.push_every", None, "push to the memory bank every N epochs"),
    ("--memory-budget-mb", "replay.device_budget_mb", None, "device memory for the bank; beyond it a pinned host tier"),
    (
        "--joint-objective",
        "joint.objective",
        None,
        "replay baselines: one forward on cat(new, memory) or a sum of two losses",
    ),
    ("--vae-lr", "replay.vae_lr", None, "generative replay: VAE learning rate"),
    ("--vae-latent", "replay.vae_latent", None, "generative replay: VAE latent size"),
    ("--vae-kl-weight", "replay.vae_kl_weight", None, "generative replay: KL weight"),
    ("--vae-logit-weight", "replay.vae_logit_weight", None, "generative replay: teacher-logit reconstruction weight"),
    ("--replay-batch", "replay.replay_batch", None, "generative replay: samples per replay batch"),
    (
        "--compile-mode",
        "runtime.compile_mode",
        None,
        "with --compile: default, or reduce-overhead to replay the student steps and their batches as CUDA graphs "
        "(CUDA only; pays where kernel launches dominate, e.g. the small presets on a GPU)",
    ),
    (
        "--out",
        "runtime.out",
        None,
        "run directory for config, metrics, checkpoints and TensorBoard (default: "
        "runs/PRESET, or the first free runs/PRESET-2, -3, ... when that holds a run)",
    ),
    ("--seed", "runtime.seed", None, "random seed"),
    ("--device", "runtime.device", None, _DEVICE_HELP),
    ("--eval-batch-size", "runtime.eval_batch_size", None, "test-set evaluation batch size"),
    (
        "--stop-after",
        "runtime.stop_after",
        None,
        "stop after this many epochs with a checkpoint (the schedule still spans --epochs); continue with --resume",
    ),
]


_TRAIN_DEFAULTS = to_dict(train_config(DEFAULT_TRAIN_PRESET))


def _preset_value(path: str) -> Any:
    head, _, leaf = path.partition(".")
    return _TRAIN_DEFAULTS[head][leaf] if leaf else _TRAIN_DEFAULTS[head]


def _option_type(config_class: type, path: str) -> Any:
    """The click type of the config field at ``path``: its ``Literal``'s choices, or its scalar type."""
    annotation = field_type(config_class, path)
    choices = literal_choices(annotation)
    if choices is not None:
        return click.Choice(list(choices))
    return next(kind for kind in get_args(annotation) or (annotation,) if kind is not type(None))


def _flag_options(
    table: list[tuple[str, str, Any, str]], shown_default: Callable[[str], str | None], config_class: type
) -> Callable:
    """One option per row, ``default=None`` so that a flag left out keeps the preset's (or recipe's) value;
    ``shown_default(path)`` is what ``--help`` says that value is."""

    def decorate(func: Callable) -> Callable:
        for flag, path, kind, text in reversed(table):
            kind = kind or _option_type(config_class, path)
            func = click.option(
                flag,
                path.replace(".", "__"),
                type=kind,
                default=None,
                help=text,
                show_default=shown_default(path) or False,
            )(func)
        return func

    return decorate


def _overrides(kwargs: dict[str, Any], table: list[tuple[str, str, Any, str]]) -> dict[str, Any]:
    return {
        path: kwargs[path.replace(".", "__")] for _, path, _, _ in table if kwargs[path.replace(".", "__")] is not None
    }


def _amp_option(func: Callable) -> Callable:
    # --amp and --no-amp are one switch (click's feature switch): the last one given wins.
    return click.option(
        "--amp",
        "amp",
        flag_value="bf16",
        default=None,
        help="mixed precision: bf16 autocast; by default on CPUs with native bf16 (AVX512-BF16, AMX), "
        "float32 elsewhere; emulated, it slows other CPUs several times (see README); see --amp-dtype",
    )(
        click.option("--no-amp", "amp", flag_value="none", help="float32 throughout, also where --amp is the default")(
            click.option(
                "--amp-dtype",
                type=click.Choice(get_args(AmpMode)),
                default=None,
                help="precision by name, over --amp / --no-amp (fp16 uses a GradScaler, CUDA only; auto: the default)",
            )(func)
        )
    )


def _amp_mode(amp: str | None, amp_dtype: str | None) -> str | None:
    if amp_dtype is not None:
        return amp_dtype
    return amp


# How each config key is spelt on the command line, so that a message names the flag the user typed.
_TRAIN_FLAG_NAMES = {
    **{path: flag for flag, path, _, _ in _TRAIN_FLAGS},
    "runtime.amp": "--amp",
    "runtime.compile": "--compile",
    "runtime.progress": "--no-progress",
    "teacher.trust_pickle": "--trust-pickle",
    "teacher.cross_dataset": "--cross-dataset",
}


@cli.command()
@click.option(
    "--preset",
    type=click.Choice(list(TRAIN_PRESETS)),
    default=None,
    show_default=DEFAULT_TRAIN_PRESET,
    help="named config (`fastlrwa presets` lists them); the flags below override its values",
)
@_flag_options(
    _TRAIN_FLAGS,
    lambda path: None if _preset_value(path) is None else f"{_preset_value(path)} in the {DEFAULT_TRAIN_PRESET} preset",
    TrainConfig,
)
@_amp_option
@click.option(
    "--compile/--no-compile",
    "compile_",
    default=None,
    help="compile the student and generator updates with torch.compile (pays on GPUs and for large "
    "models, not on the CPU presets: see README)",
)
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--force", is_flag=True, help="start afresh in an --out that holds a run (its files are replaced)")
@click.option("--no-progress", is_flag=True, help="no live progress bar (one line per epoch instead)")
@click.option("--trust-pickle", is_flag=True, help="allow a teacher file that is a pickled module (runs its code!)")
@click.option(
    "--cross-dataset", is_flag=True, help="use a teacher whose checkpoint records another dataset than --dataset"
)
@click.option("--print-config", is_flag=True, help="print the resolved config as JSON and exit without training")
def train(
    preset: str | None,
    amp: str | None,
    amp_dtype: str | None,
    compile_: bool | None,
    resume: bool,
    force: bool,
    no_progress: bool,
    trust_pickle: bool,
    cross_dataset: bool,
    print_config: bool,
    **flags: Any,
) -> None:
    """Distil a teacher into a student without data. With no arguments: the digits preset, end to end."""
    from fastlrwa.commands.train import prepare_train, run_train

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
    if cross_dataset:
        overrides["teacher.cross_dataset"] = True
    config = train_config(preset, overrides)
    options = {"resume": resume, "force": force, "explicit": set(overrides), "flags": _TRAIN_FLAG_NAMES}
    if print_config:
        config, _ = prepare_train(config, **options)
        click.echo(json.dumps(to_dict(config), indent=2))
        return
    run_train(config, **options)


# (flag, PretrainConfig field, click type, help) for `pretrain`; a flag left out keeps the dataset's recipe.
_PRETRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--arch", "arch", None, f"teacher architecture: {_ARCH_CHOICES}"),
    ("--out", "out", None, "output folder for model.pt and metrics.json"),
    ("--epochs", "epochs", None, "training epochs"),
    ("--batch-size", "batch_size", None, "batch size (per process under torchrun)"),
    ("--lr", "lr", None, "peak learning rate of SGD with Nesterov momentum 0.9, cosine schedule"),
    ("--data-root", "data_root", None, _DATA_ROOT_HELP),
    ("--seed", "seed", None, "random seed"),
    ("--device", "device", None, _DEVICE_HELP),
]
_PRETRAIN_FLAG_NAMES = {
    **{path: flag for flag, path, _, _ in _PRETRAIN_FLAGS},
    "dataset": "--dataset",
    "download": "--download",
    "amp": "--amp",
    "compile": "--compile",
    "progress": "--no-progress",
    "loader": "--loader",
}
_RECIPE_FIELDS = ("arch", "epochs", "batch_size", "lr")


def _pretrain_default(path: str) -> str | None:
    if path in _RECIPE_FIELDS:
        return "the dataset's recipe"
    if path == "out":
        return "teachers/DATASET-ARCH"
    value = getattr(PretrainConfig(), path)
    return None if value is None else str(value)


@cli.command()
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(list(PRETRAIN_PRESETS)),
    help="dataset to train the teacher on; its recipe (`fastlrwa presets`) gives the defaults",
)
@_flag_options(_PRETRAIN_FLAGS, _pretrain_default, PretrainConfig)
@click.option("--download", is_flag=True, default=None, help="let torchvision download the dataset (needs internet)")
@_amp_option
@click.option("--compile/--no-compile", "compile_", default=None, help="compile the training step with torch.compile")
@click.option("--no-progress", is_flag=True, help="no live progress bar (one line per epoch instead)")
@click.option(
    "--loader",
    type=click.Choice(_LOADERS),
    default="torch",
    show_default=True,
    help="torch: the split held on the device; dali: an NVIDIA DALI pipeline (pip install 'fastlrwa[dali]')",
)
@click.option("--force", is_flag=True, help="replace the teacher in an --out that holds one")
def pretrain(
    dataset: str,
    download: bool | None,
    amp: str | None,
    amp_dtype: str | None,
    compile_: bool | None,
    no_progress: bool,
    loader: str,
    force: bool,
    **flags: Any,
) -> None:
    """Train a teacher with the dataset's recipe (SGD + momentum, cosine; crop + flip where standard)."""
    from fastlrwa.commands.pretrain import run_pretrain
    from fastlrwa.config.presets import pretrain_config
    from fastlrwa.distributed import DistributedContext

    overrides = _overrides(flags, _PRETRAIN_FLAGS)
    mode = _amp_mode(amp, amp_dtype)
    if mode is not None:
        overrides["amp"] = mode
    if compile_ is not None:
        overrides["compile"] = compile_
    if download:
        overrides["download"] = True
    if no_progress:
        overrides["progress"] = False
    overrides["loader"] = loader
    config = pretrain_config(dataset, overrides)
    with DistributedContext.from_environment(config.device) as context:
        run_pretrain(config, context, force=force, flags=_PRETRAIN_FLAG_NAMES)


@cli.command()
@click.option(
    "--checkpoint",
    required=True,
    help="model file (OUT/model.pt of pretrain, RUN/student.pt of train, or a state_dict)",
)
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES),
    default=None,
    help="test set to evaluate on (default: the dataset the checkpoint records)",
)
@click.option("--arch", default=None, help=f"architecture, for a bare state_dict: {_ARCH_CHOICES}")
@click.option("--data-root", default=None, help=_DATA_ROOT_HELP)
@click.option("--device", default="auto", show_default=True, help=_DEVICE_HELP)
@click.option("--batch-size", type=int, default=1024, show_default=True, help="evaluation batch size")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--trust-pickle", is_flag=True, help="allow a pickled module (runs its code!)")
@click.option("--cross-dataset", is_flag=True, help="evaluate on another dataset than the checkpoint records")
@click.option(
    "--loader",
    type=click.Choice(_LOADERS),
    default="torch",
    show_default=True,
    help="read the test split with torch or decode it with NVIDIA DALI (pip install 'fastlrwa[dali]')",
)
def evaluate(
    checkpoint: str,
    dataset: str | None,
    arch: str | None,
    data_root: str | None,
    device: str,
    batch_size: int,
    as_json: bool,
    trust_pickle: bool,
    cross_dataset: bool,
    loader: str,
) -> None:
    """Test accuracy and per-class accuracy of a model."""
    from fastlrwa.commands.evaluate import run_evaluate

    run_evaluate(
        checkpoint,
        dataset,
        arch=arch,
        data_root=data_root,
        device=device,
        batch_size=batch_size,
        as_json=as_json,
        trust_pickle=trust_pickle,
        loader=loader,
        cross_dataset=cross_dataset,
    )


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_md", default=None, help="write the markdown table here")
@click.option("--csv", "out_csv", default=None, help="write a CSV here")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option(
    "--plot",
    default=None,
    help="draw Figure 4 (accuracy and cumulative mean per epoch) into this image (.png, .pdf, .svg)",
)
@click.option(
    "--compare",
    default=None,
    metavar="BASELINE",
    help="compare every setting with a baseline: a method (mb-dfkd), key=value (generator.lr=0.001) or both "
    "(mb-dfkd,generator.lr=0.001); default: settings that differ only in the method, pairwise",
)
@click.option("--equal-time", is_flag=True, help="also compare the runs cut at the same cumulative training time")
@click.option(
    "--time-budget",
    type=float,
    default=None,
    metavar="SECONDS",
    help="training time for --equal-time (default: the shortest compared run's total)",
)
@click.option(
    "--compare-csv", "out_compare_csv", default=None, help="write the comparisons (one row per quantity) as CSV here"
)
@click.option(
    "--samples",
    default=None,
    metavar="FILE.png",
    help="one run only: draw its generator (from its checkpoint) on the run's fixed latents into a PNG "
    "grid, the teacher's predicted class over each sample",
)
def report(
    run_dirs: tuple[str, ...],
    out_md: str | None,
    out_csv: str | None,
    as_json: bool,
    plot: str | None,
    compare: str | None,
    equal_time: bool,
    time_budget: float | None,
    out_compare_csv: str | None,
    samples: str | None,
) -> None:
    """Table 1 of the paper for one or more run directories: mean/variance past each percentile, best accuracy;
    for settings with >= 2 seeds, 95 % Welch and bootstrap intervals of their differences."""
    from fastlrwa.commands.report import run_report

    run_report(
        list(run_dirs),
        out_md=out_md,
        out_csv=out_csv,
        as_json=as_json,
        plot=plot,
        compare=compare,
        equal_time=equal_time,
        time_budget_s=time_budget,
        out_compare_csv=out_compare_csv,
        samples=samples,
    )


@cli.command()
@click.option("--preset", default=None, help="named config every run starts from (as for train; default: digits)")
@click.option(
    "--methods", default=None, metavar="M1,M2", help="methods to run, comma-separated (default: the preset's)"
)
@click.option("--seeds", default="0", show_default=True, help="seeds: a list and/or ranges, e.g. 0-4 or 0,1,7")
@click.option(
    "--set",
    "axes",
    multiple=True,
    metavar="KEY=V1,V2",
    help="a grid axis: a dotted config key with a train flag (generator.lr=1e-3,3e-3); repeat for more axes",
)
@click.option(
    "--fix",
    "fixed",
    multiple=True,
    metavar="KEY=VALUE",
    help="an override every run gets (schedule.epochs=10); not part of the run directories' names",
)
@click.option("--root", default=None, help="folder of the sweep's runs and tables (default: sweeps/PRESET)")
@click.option("--jobs", type=int, default=None, help="runs at once (default: one per CPU core / per visible GPU)")
@click.option("--threads", type=int, default=None, help="CPU threads per run (default: 1 on CPU)")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="where the runs train; cuda spreads them over the visible GPUs",
)
@click.option("--resume", is_flag=True, help="continue runs that were interrupted (finished runs are always skipped)")
@click.option(
    "--dry-run", is_flag=True, help="print the train command of every run still to do (e.g. for a SLURM array)"
)
@click.option("--compare", default=None, metavar="BASELINE", help="baseline of the final comparisons, as for report")
def sweep(
    preset: str | None,
    methods: str | None,
    seeds: str,
    axes: tuple[str, ...],
    fixed: tuple[str, ...],
    root: str | None,
    jobs: int | None,
    threads: int | None,
    device: str,
    resume: bool,
    dry_run: bool,
    compare: str | None,
) -> None:
    """Run a grid of methods x seeds x --set values as parallel train runs; skip finished runs, write Table 1
    with 95 % intervals of the differences."""
    from fastlrwa.commands.sweep import SweepOptions, run_sweep
    from fastlrwa.commands.sweep_grid import Grid
    from fastlrwa.commands.train_argv import TrainArgv

    train_argv = TrainArgv.of(train)
    grid = Grid.parse(
        preset=preset, methods=methods, seeds=seeds, axes=axes, fixed=fixed, root=root, train_argv=train_argv
    )
    run_sweep(
        grid,
        SweepOptions(jobs=jobs, threads=threads, device=device, resume=resume, dry_run=dry_run, compare=compare),
        train_argv,
    )


@cli.command()
@click.option("--checkpoint", required=True, help="student or teacher model file (RUN/student.pt, OUT/model.pt)")
@click.option("--out", required=True, help="folder for model.pt2 (AOTInductor package) and meta.json")
@click.option("--batch", type=int, default=None, help="fix the batch size (default: any batch size)")
@click.option("--device", default="cpu", show_default=True, help="compile for cpu, cuda or cuda:N")
@click.option("--arch", default=None, help=f"architecture, for a bare state_dict: {_ARCH_CHOICES}")
@click.option("--trust-pickle", is_flag=True, help="allow a pickled module (runs its code!)")
def export(checkpoint: str, out: str, batch: int | None, device: str, arch: str | None, trust_pickle: bool) -> None:
    """Export a model for C++ inference: torch.export + AOTInductor, BatchNorm folded (see README)."""
    from fastlrwa.commands.export import run_export

    run_export(checkpoint, out, trust_pickle=trust_pickle, batch=batch, device=device, arch=arch)


@cli.command()
def presets() -> None:
    """The named configs of `train --preset` and the teacher recipes of `pretrain`."""
    click.echo("train presets (`fastlrwa train --preset NAME --print-config` shows every value):")
    for name in TRAIN_PRESETS:
        config = train_config(name)
        s = config.schedule
        teacher = PRETRAIN_PRESETS[config.data.dataset]["arch"]
        default = "  (default)" if name == DEFAULT_TRAIN_PRESET else ""
        click.echo(
            f"  {name:<14} {config.method} on {config.data.dataset}: {teacher} -> {config.student.arch}, "
            f"{s.epochs} epochs x {s.iters_per_epoch} iterations x ({s.gen_steps} + {s.student_steps}) steps, "
            f"batch {s.batch_size}{default}"
        )
    click.echo("teacher recipes (`fastlrwa pretrain --dataset NAME`):")
    for name, recipe in PRETRAIN_PRESETS.items():
        click.echo(
            f"  {name:<14} {recipe['arch']}, {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr {recipe['lr']}"
        )


def configure_output() -> None:
    """How the process reports besides the error lines: library warnings as ``warning: ...`` lines, and none of
    the notices from torch a user cannot act on, which would break into the log: the CUDA toolkit probe of
    torch.utils.cpp_extension on a machine without a GPU (export, --compile), and torch's own use of the
    deprecated torch.jit.script when forward-mode AD (the exact LRWA Hessian-vector product) first runs."""
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def main() -> None:
    configure_thread_waiting()
    keep_freed_memory()
    configure_output()
    cli(prog_name="fastlrwa")


if __name__ == "__main__":
    main()
