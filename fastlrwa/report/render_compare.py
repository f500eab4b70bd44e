"""The differences between settings as markdown, CSV and JSON (pure, no I/O)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from fastlrwa.report.comparisons import Comparison, QuantityDifference
from fastlrwa.report.intervals import Difference, Interval
from fastlrwa.report.summary import AggregateSummary, Block
from fastlrwa.run_log.settings import setting_name

VIEW_TITLES = {"epochs": "equal epochs", "equal_time": "equal training time"}


def compare_legend(resamples: int, seed: int, *, equal_time: bool) -> str:
    text = (
        "Each row compares setting A with setting B of one table block over their seeds: Δ = mean over A's seeds − "
        "mean over B's seeds; A and B columns: mean ± sample std over seeds. 95 % intervals of Δ: Welch's t "
        f"(Welch–Satterthwaite degrees of freedom) and a percentile bootstrap ({resamples} resamples, seed {seed}, "
        "each setting's seeds resampled on their own). An interval that contains 0: the two settings cannot be told "
        "apart with these seeds. Below 5 seeds a setting the bootstrap interval is too narrow: read Welch's."
    )
    if equal_time:
        text += (
            " Equal training time: every run cut at the same cumulative training time T (the epochs' iteration "
            "time, without evaluation or start-up), μ and σ² over the epochs it had finished by then; T is the "
            "shortest compared run's total unless --time-budget gives it."
        )
    return text


def _label(aggregate: AggregateSummary, cell_keys: Mapping[Block, Sequence[str]]) -> str:
    return setting_name(aggregate.method, aggregate.setting, cell_keys.get(aggregate.block, []))


def _spread(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values)


def _interval(interval: Interval) -> str:
    return f"[{interval.low:+.2f}, {interval.high:+.2f}]"


def _epochs_reached(epochs: Sequence[int]) -> str:
    low, high = min(epochs), max(epochs)
    return str(low) if low == high else f"{low}-{high}"


def _budget_line(comparison: Comparison, cell_keys: Mapping[Block, Sequence[str]]) -> str:
    a, b = comparison.a, comparison.b
    return (
        f"{_label(a, cell_keys)} − {_label(b, cell_keys)}: T = {comparison.budget_s:.1f} s of training; epochs "
        f"reached within T: {_epochs_reached(comparison.epochs_a)} of {a.n_epochs} (A), "
        f"{_epochs_reached(comparison.epochs_b)} of {b.n_epochs} (B)"
    )


def _markdown_row(comparison: Comparison, row: QuantityDifference, cell_keys: Mapping[Block, Sequence[str]]) -> str:
    (mean_a, std_a), (mean_b, std_b) = _spread(row.a), _spread(row.b)
    d = row.difference
    cells = [
        f"{_label(comparison.a, cell_keys)} − {_label(comparison.b, cell_keys)}",
        f"{d.n_a} / {d.n_b}",
        row.quantity.name,
        f"{mean_a:.2f} ± {std_a:.2f}",
        f"{mean_b:.2f} ± {std_b:.2f}",
        f"{d.estimate:+.2f}",
        _interval(d.welch),
        _interval(d.bootstrap),
        row.verdict,
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_comparisons_markdown(
    comparisons: Sequence[Comparison],
    notes: Sequence[str],
    cell_keys: Mapping[Block, Sequence[str]],
    *,
    resamples: int,
    seed: int,
) -> str:
    """A section per (block, view): one row per compared quantity; then the notes. Empty without comparisons."""
    if not comparisons and not notes:
        return ""
    legend = compare_legend(resamples, seed, equal_time=any(c.view == "equal_time" for c in comparisons))
    lines = ["# Differences between settings (95 % intervals over seeds)", "", legend, ""]
    sections: dict[tuple[Block, str], list[Comparison]] = {}
    for comparison in comparisons:
        sections.setdefault((comparison.block, comparison.view), []).append(comparison)
    header = ["A − B", "seeds", "quantity", "A", "B", "Δ", "95 % Welch", "95 % bootstrap", "A vs B"]
    for (block, view), members in sections.items():
        lines += [f"## {block.title} · {VIEW_TITLES[view]}", ""]
        if view == "equal_time":
            lines += [f"- {_budget_line(comparison, cell_keys)}" for comparison in members] + [""]
        lines += ["| " + " | ".join(header) + " |", "| :--- | ---: | :--- | " + "---: | " * 5 + ":--- |"]
        lines += [_markdown_row(comparison, row, cell_keys) for comparison in members for row in comparison.rows]
        lines.append("")
    if notes:
        lines += ["Not compared:", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


COMPARE_CSV_COLUMNS = [
    "view",
    "dataset",
    "teacher",
    "student",
    "a",
    "b",
    "a_method",
    "b_method",
    "n_a",
    "n_b",
    "epochs_a",
    "epochs_b",
    "budget_s",
    "quantity",
    "a_mean",
    "a_std",
    "b_mean",
    "b_std",
    "difference",
    "welch_low",
    "welch_high",
    "welch_df",
    "bootstrap_low",
    "bootstrap_high",
    "bootstrap_resamples",
    "bootstrap_seed",
    "confidence",
    "verdict",
]


def _difference_fields(d: Difference) -> dict[str, Any]:
    return {
        "difference": d.estimate,
        "welch_low": d.welch.low,
        "welch_high": d.welch.high,
        "welch_df": "" if math.isnan(d.welch_df) else d.welch_df,
        "bootstrap_low": d.bootstrap.low,
        "bootstrap_high": d.bootstrap.high,
        "bootstrap_resamples": d.resamples,
        "bootstrap_seed": d.seed,
        "confidence": d.confidence,
    }


def render_comparisons_csv(comparisons: Sequence[Comparison], cell_keys: Mapping[Block, Sequence[str]]) -> str:
    """One row per (comparison, quantity), numbers at full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COMPARE_CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for comparison in comparisons:
        block = comparison.block
        for row in comparison.rows:
            (mean_a, std_a), (mean_b, std_b) = _spread(row.a), _spread(row.b)
            writer.writerow(
                {
                    "view": comparison.view,
                    "dataset": block.dataset,
                    "teacher": block.teacher or "",
                    "student": block.student or "",
                    "a": _label(comparison.a, cell_keys),
                    "b": _label(comparison.b, cell_keys),
                    "a_method": comparison.a.method,
                    "b_method": comparison.b.method,
                    "n_a": len(row.a),
                    "n_b": len(row.b),
                    "epochs_a": comparison.a.n_epochs,
                    "epochs_b": comparison.b.n_epochs,
                    "budget_s": "" if comparison.budget_s is None else comparison.budget_s,
                    "quantity": row.quantity.key,
                    "a_mean": mean_a,
                    "a_std": std_a,
                    "b_mean": mean_b,
                    "b_std": std_b,
                    **_difference_fields(row.difference),
                    "verdict": row.verdict,
                }
            )
    return buffer.getvalue()


def comparisons_document(
    comparisons: Sequence[Comparison], notes: Sequence[str], cell_keys: Mapping[Block, Sequence[str]]
) -> dict[str, Any]:
    """``{"comparisons": [...], "not_compared": [...]}`` for the ``--json`` document; per-seed values included."""
    entries = []
    for comparison in comparisons:
        entry: dict[str, Any] = {
            "view": comparison.view,
            "dataset": comparison.block.dataset,
            "a": {
                "label": _label(comparison.a, cell_keys),
                "method": comparison.a.method,
                "runs": [str(run.record.path) for run in comparison.a.runs],
            },
            "b": {
                "label": _label(comparison.b, cell_keys),
                "method": comparison.b.method,
                "runs": [str(run.record.path) for run in comparison.b.runs],
            },
            "quantities": [
                {
                    "quantity": row.quantity.key,
                    "a": row.a,
                    "b": row.b,
                    **_difference_fields(row.difference),
                    "welch_df": None if math.isnan(row.difference.welch_df) else row.difference.welch_df,
                    "verdict": row.verdict,
                }
                for row in comparison.rows
            ],
        }
        if comparison.view == "equal_time":
            entry.update(budget_s=comparison.budget_s, epochs_a=comparison.epochs_a, epochs_b=comparison.epochs_b)
        entries.append(entry)
    return {"comparisons": entries, "not_compared": list(notes)}
