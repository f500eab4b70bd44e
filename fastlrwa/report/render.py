"""Table 1 as markdown (the paper's layout), CSV and a JSON document (pure, no I/O)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from fastlrwa.report.summary import AggregateSummary, Block, RunSummary, TableGroup, runs_label
from fastlrwa.report.table import PERCENTILES, MeanStd
from fastlrwa.run_log.settings import Setting, cell_label, setting_name

MARKDOWN_LEGEND = (
    "μ and σ² past the n-th percentile: mean and population variance (%²) of the student's test accuracy (%) "
    "over the epochs k > n·E/100 of an E-epoch run. Acc_max: the best test accuracy of the run. "
    'Rows "method (n seeds)": mean ± sample standard deviation (ddof = 1) over the seeds '
    '("n runs, k seeds" where runs share a seed). '
    'Where runs of a method differ in more than their seed, "method · key=value" names the config keys that differ. '
    "Agree_heldout: the student-teacher argmax agreement (%) on the run's held-out generated samples at its last "
    'epoch ("–" for a run that logged none). A run with no test data has no accuracy: its row says '
    '"accuracy not measured" and its accuracy cells are "–".'
)
NOT_MEASURED = "accuracy not measured"
MISSING = "–"


def _escape(text: str) -> str:
    # "_" needs no escape: CommonMark ignores it inside a word, and names are words.
    for special in ("\\", "|", "*", "`"):
        text = text.replace(special, "\\" + special)
    return text


def _run_label(run: RunSummary, cell_keys: Sequence[str]) -> str:
    record = run.record
    note = "" if record.complete else f", {record.epochs_logged}/{record.epochs_configured} epochs"
    note += "" if run.stats is not None else f", {NOT_MEASURED}"
    return f"{_escape(setting_name(record.method, run.setting, cell_keys))} (seed {record.seed}{note})"


def _aggregate_label(aggregate: AggregateSummary, cell_keys: Sequence[str]) -> str:
    note = "" if aggregate.complete else f", {aggregate.n_epochs} epochs"
    note += "" if aggregate.stats is not None else f", {NOT_MEASURED}"
    name = setting_name(aggregate.method, aggregate.setting, cell_keys)
    return f"{_escape(name)} ({runs_label([run.record.seed for run in aggregate.runs])}{note})"


def _mean_std(cell: MeanStd) -> str:
    return f"{cell.mean:.2f} ± {cell.std:.2f}"


_ACCURACY_CELLS = 2 * len(PERCENTILES) + 1


def _run_cells(run: RunSummary, cell_keys: Sequence[str]) -> list[str]:
    cells = [MISSING] * _ACCURACY_CELLS
    if run.stats is not None:
        cells = [
            f"{value:.2f}"
            for p in PERCENTILES
            for value in (run.stats.percentiles[p].mean, run.stats.percentiles[p].var)
        ]
        cells.append(f"{run.stats.acc_max:.2f}")
    heldout = MISSING if run.heldout is None else f"{100 * run.heldout:.2f}"
    return [_run_label(run, cell_keys), *cells, heldout]


def _aggregate_cells(aggregate: AggregateSummary, cell_keys: Sequence[str]) -> list[str]:
    cells = [MISSING] * _ACCURACY_CELLS
    if aggregate.stats is not None:
        stats = aggregate.stats
        cells = [_mean_std(cell) for p in PERCENTILES for cell in (stats.percentiles[p].mean, stats.percentiles[p].var)]
        cells.append(_mean_std(stats.acc_max))
    heldout = aggregate.heldout
    return [
        _aggregate_label(aggregate, cell_keys),
        *cells,
        MISSING if heldout is None else _mean_std(MeanStd(100 * heldout.mean, 100 * heldout.std)),
    ]


def _group_heading(group: TableGroup) -> list[str]:
    teacher_accuracies = sorted({run.record.teacher_accuracy for run in group.runs} - {None})
    epochs = sorted({run.record.epochs_configured for run in group.runs})
    facts = []
    if teacher_accuracies:
        facts.append("T_Acc = " + " / ".join(f"{accuracy:.2f}%" for accuracy in teacher_accuracies))
    facts.append("Epochs (E) = " + " / ".join(map(str, epochs)))
    return [f"## {_escape(group.block.title)}", "", " · ".join(facts), ""]


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(groups: Sequence[TableGroup]) -> str:
    """Table 1: per (dataset, teacher, student) block, one row per run and per multi-seed setting."""
    header = ["Method"]
    for p in PERCENTILES:
        header += [f">{p}th μ ↑", f">{p}th σ² ↓"]
    header += ["Acc_max (%)", "Agree_heldout (%)"]
    lines = ["# Table 1: student test accuracy over epoch percentiles", "", MARKDOWN_LEGEND, ""]
    for group in groups:
        lines += _group_heading(group)
        lines += [_table_line(header), _table_line([":---"] + ["---:"] * (len(header) - 1))]
        for row in group.rows:
            cells = _run_cells if isinstance(row, RunSummary) else _aggregate_cells
            lines.append(_table_line(cells(row, group.cell_keys)))
        lines.append("")
    return "\n".join(lines)


def csv_columns() -> list[str]:
    """Column names of the CSV; ``*_std`` columns are filled only on aggregate rows."""
    columns = [
        "row_type",
        "run",
        "method",
        "cell",
        "dataset",
        "teacher",
        "student",
        "seed",
        "n_runs",
        "epochs",
        "epochs_configured",
        "complete",
        "accuracy_measured",
        "acc_max",
        "acc_max_std",
    ]
    for p in PERCENTILES:
        columns += [f"p{p}_mean", f"p{p}_mean_std", f"p{p}_var", f"p{p}_var_std"]
    return columns + ["agree_heldout", "agree_heldout_std"]


def _block_columns(block: Block) -> dict[str, str]:
    return {"dataset": block.dataset, "teacher": block.teacher or "", "student": block.student or ""}


def _run_csv_row(run: RunSummary, cell_keys: Sequence[str]) -> dict[str, Any]:
    record = run.record
    row: dict[str, Any] = {
        "row_type": "run",
        "run": str(record.path),
        "method": record.method,
        "cell": cell_label(run.setting, cell_keys),
        **_block_columns(Block.of(record)),
        "seed": record.seed,
        "n_runs": 1,
        "epochs": record.epochs_logged,
        "epochs_configured": record.epochs_configured,
        "complete": int(record.complete),
        "accuracy_measured": int(run.stats is not None),
        "agree_heldout": "" if run.heldout is None else run.heldout,
    }
    if run.stats is not None:
        row["acc_max"] = run.stats.acc_max
        for p in PERCENTILES:
            row[f"p{p}_mean"] = run.stats.percentiles[p].mean
            row[f"p{p}_var"] = run.stats.percentiles[p].var
    return row


def _aggregate_csv_row(aggregate: AggregateSummary, cell_keys: Sequence[str]) -> dict[str, Any]:
    stats = aggregate.stats
    configured = {run.record.epochs_configured for run in aggregate.runs}
    row: dict[str, Any] = {
        "row_type": "aggregate",
        "run": ";".join(str(run.record.path) for run in aggregate.runs),
        "method": aggregate.method,
        "cell": cell_label(aggregate.setting, cell_keys),
        **_block_columns(aggregate.block),
        "n_runs": len(aggregate.runs),
        "epochs": aggregate.n_epochs,
        "epochs_configured": configured.pop() if len(configured) == 1 else "",
        "complete": int(aggregate.complete),
        "accuracy_measured": int(stats is not None),
    }
    if aggregate.heldout is not None:
        row["agree_heldout"], row["agree_heldout_std"] = aggregate.heldout.mean, aggregate.heldout.std
    if stats is not None:
        row["acc_max"], row["acc_max_std"] = stats.acc_max.mean, stats.acc_max.std
        for p in PERCENTILES:
            cell = stats.percentiles[p]
            row[f"p{p}_mean"], row[f"p{p}_mean_std"] = cell.mean.mean, cell.mean.std
            row[f"p{p}_var"], row[f"p{p}_var_std"] = cell.var.mean, cell.var.std
    return row


def render_csv(groups: Sequence[TableGroup]) -> str:
    """One row per run and per aggregate (``row_type``), numbers at full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(), restval="", lineterminator="\n")
    writer.writeheader()
    for group in groups:
        for row in group.rows:
            csv_row = _run_csv_row if isinstance(row, RunSummary) else _aggregate_csv_row
            writer.writerow(csv_row(row, group.cell_keys))
    return buffer.getvalue()


def _mean_std_dict(cell: MeanStd) -> dict[str, float]:
    return {"mean": cell.mean, "std": cell.std}


def _cell(setting: Setting, keys: Sequence[str]) -> dict[str, Any]:
    values = dict(setting)
    return {key: values.get(key) for key in keys}


def report_document(
    runs: Sequence[RunSummary],
    aggregates: Sequence[AggregateSummary],
    cell_keys: Mapping[Block, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The ``--json`` document: ``{"runs": [...], "aggregates": [...]}``.

    ``cell``: the values of the config keys that tell the settings of the entry's block apart (``cell_keys``).
    """
    cell_keys = cell_keys or {}
    return {
        "runs": [
            {
                "run": str(run.record.path),
                "method": run.record.method,
                "cell": _cell(run.setting, cell_keys.get(Block.of(run.record), [])),
                "dataset": run.record.dataset,
                "seed": run.record.seed,
                "epochs": run.record.epochs_logged,
                "accuracy_measured": run.stats is not None,
                "acc_max": run.stats.acc_max if run.stats is not None else None,
                "percentiles": (
                    {str(p): {"mean": stat.mean, "var": stat.var} for p, stat in run.stats.percentiles.items()}
                    if run.stats is not None
                    else None
                ),
                "agree_heldout": run.heldout,
            }
            for run in runs
        ],
        "aggregates": [
            {
                "method": aggregate.method,
                "cell": _cell(aggregate.setting, cell_keys.get(aggregate.block, [])),
                "dataset": aggregate.block.dataset,
                "n_runs": len(aggregate.runs),
                "runs": [str(run.record.path) for run in aggregate.runs],
                "accuracy_measured": aggregate.stats is not None,
                "acc_max": _mean_std_dict(aggregate.stats.acc_max) if aggregate.stats is not None else None,
                "percentiles": (
                    {
                        str(p): {"mean": _mean_std_dict(cell.mean), "var": _mean_std_dict(cell.var)}
                        for p, cell in aggregate.stats.percentiles.items()
                    }
                    if aggregate.stats is not None
                    else None
                ),
                "agree_heldout": _mean_std_dict(aggregate.heldout) if aggregate.heldout is not None else None,
            }
            for aggregate in aggregates
        ],
    }
