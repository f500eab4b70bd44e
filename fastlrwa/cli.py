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
from typing import Any

import click

from fastlrwa import __version__
from fastlrwa.commands.config_flags import config_options, config_overrides
from fastlrwa.commands.report_cli import report
from fastlrwa.commands.sweep_cli import sweep
from fastlrwa.config.presets import DEFAULT_TRAIN_PRESET, PRETRAIN_PRESETS, TRAIN_PRESETS, train_config
from fastlrwa.config.schema import ARCH_CHOICES, DATA_ROOT_HELP, DEVICE_HELP, PretrainConfig, TrainConfig, to_dict
from fastlrwa.cpu_runtime import configure_thread_waiting, keep_freed_memory
from fastlrwa.data.catalog import DATASET_NAMES
from fastlrwa.errors import UserFacingError
from fastlrwa.options import choices_of, flag_names
from fastlrwa.run_log.settings import flatten_config
from fastlrwa.trainer.stop_signals import stop_at_once, stop_error, stop_name

# Everything imported above is torch-free: torch, torchvision and scikit-learn (~5 s together) are imported by
# a command once its input has been checked, so a typo is answered in about a second.


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            with stop_at_once():
                return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            # Where a command has no Ctrl-C or SIGTERM handling of its own (imports, compiling): one line, the code.
            return self._fail(stop_error(stop)(f"stopped by {stop_name(stop)}"))
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


# The commands with many options of their own keep them in a module each; the rest are below.
cli.add_command(report)
cli.add_command(sweep)

_LOADERS = list(choices_of(PretrainConfig, "loader"))

# How each config key is spelt on the command line, so that a message names the flag the user typed.
TRAIN_FLAGS = flag_names(TrainConfig)
PRETRAIN_FLAGS = {**flag_names(PretrainConfig), "dataset": "--dataset"}
_RECIPE_FIELDS = ("arch", "epochs", "batch_size", "lr")


@cli.command()
@click.option(
    "--preset",
    type=click.Choice(list(TRAIN_PRESETS)),
    default=None,
    show_default=DEFAULT_TRAIN_PRESET,
    help="named config (`fastlrwa presets` lists them); the flags below override its values",
)
@config_options(
    TrainConfig,
    flatten_config(to_dict(train_config(DEFAULT_TRAIN_PRESET))),
    lambda key, value: None if value is None else f"{value} in the {DEFAULT_TRAIN_PRESET} preset",
)
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--force", is_flag=True, help="start afresh in an --out that holds a run (its files are replaced)")
@click.option("--print-config", is_flag=True, help="print the resolved config as JSON and exit without training")
def train(preset: str | None, resume: bool, force: bool, print_config: bool, **flags: Any) -> None:
    """Distil a teacher into a student without data. With no arguments: the digits preset, end to end."""
    from fastlrwa.commands.train import prepare_train, run_train

    overrides = config_overrides(TrainConfig, flags)
    config = train_config(preset, overrides)
    options = {"resume": resume, "force": force, "explicit": set(overrides), "flags": TRAIN_FLAGS}
    if print_config:
        config, _ = prepare_train(config, **options)
        click.echo(json.dumps(to_dict(config), indent=2))
        return
    run_train(config, **options)


def _pretrain_default(key: str, value: Any) -> str | None:
    if key in _RECIPE_FIELDS:
        return "the dataset's recipe"
    if key == "out":
        return "teachers/DATASET-ARCH"
    return None if value is None else str(value)


@cli.command()
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(list(PRETRAIN_PRESETS)),
    help="dataset to train the teacher on; its recipe (`fastlrwa presets`) gives the defaults",
)
@config_options(PretrainConfig, to_dict(PretrainConfig()), _pretrain_default)
@click.option("--force", is_flag=True, help="replace the teacher in an --out that holds one")
def pretrain(dataset: str, force: bool, **flags: Any) -> None:
    """Train a teacher with the dataset's recipe (SGD + momentum, cosine; crop + flip where standard)."""
    from fastlrwa.commands.pretrain import run_pretrain
    from fastlrwa.config.presets import pretrain_config
    from fastlrwa.distributed import DistributedContext

    config = pretrain_config(dataset, config_overrides(PretrainConfig, flags))
    with DistributedContext.from_environment(config.device) as context:
        run_pretrain(config, context, force=force, flags=PRETRAIN_FLAGS)


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
@click.option("--arch", default=None, help=f"architecture, for a bare state_dict: {ARCH_CHOICES}")
@click.option("--data-root", default=None, help=DATA_ROOT_HELP)
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
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
@click.option("--checkpoint", required=True, help="student or teacher model file (RUN/student.pt, OUT/model.pt)")
@click.option("--out", required=True, help="folder for model.pt2 (AOTInductor package) and meta.json")
@click.option("--batch", type=int, default=None, help="fix the batch size (default: any batch size)")
@click.option("--device", default="cpu", show_default=True, help="compile for cpu, cuda or cuda:N")
@click.option("--arch", default=None, help=f"architecture, for a bare state_dict: {ARCH_CHOICES}")
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
