"""The ``fastlrwa report`` command: its options; the work is ``commands.report`` (imported once they are read)."""

from __future__ import annotations

import click


@click.command()
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
