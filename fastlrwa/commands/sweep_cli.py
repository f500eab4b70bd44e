"""The ``fastlrwa sweep`` command: its options; the work is ``commands.sweep`` (imported once they are read)."""

from __future__ import annotations

from typing import Any

import click


@click.command()
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
    help="a grid axis: a dotted config key or the train flag that sets it, without its dashes "
    "(generator.lr=1e-3,3e-3 or lr-generator=1e-3,3e-3); repeat for more axes",
)
@click.option(
    "--fix",
    "fixed",
    multiple=True,
    metavar="KEY=VALUE",
    help="an override every run gets, KEY as for --set (schedule.epochs=10 or epochs=10); not part of the run "
    "directories' names",
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
    jobs: int | None, threads: int | None, device: str, resume: bool, dry_run: bool, compare: str | None, **grid: Any
) -> None:
    """Run a grid of methods x seeds x --set values as parallel train runs; skip finished runs, write Table 1
    with 95 % intervals of the differences."""
    from fastlrwa.commands.sweep import SweepOptions, run_sweep
    from fastlrwa.commands.sweep_grid import Grid
    from fastlrwa.commands.train_argv import TrainArgv

    train_argv = TrainArgv()
    # preset, methods, seeds, axes, fixed and root: the grid's own options, read by Grid.parse.
    run_sweep(
        Grid.parse(**grid, train_argv=train_argv),
        SweepOptions(jobs=jobs, threads=threads, device=device, resume=resume, dry_run=dry_run, compare=compare),
        train_argv,
    )
