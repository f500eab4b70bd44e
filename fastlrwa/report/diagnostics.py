"""The per-epoch diagnostics of each run (README, "Diagnostics") as a markdown table and a JSON entry (pure).

Runs logged before the diagnostics existed have none of their keys: they get no table, and a run
missing one key in some epochs shows "–" there (e.g. ``agree_gen`` of DAFL, which never runs the
student in its generator step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastlrwa.run_log.metrics_file import RunRecord

# (metrics key, column heading): agreements are fractions of samples, the entropy is normalised to [0, 1].
DIAGNOSTIC_COLUMNS = (
    ("agree_gen", "agree gen"),
    ("agree_test", "agree test"),
    ("agree_heldout", "agree held-out"),
    ("gen_class_entropy", "class entropy"),
)
MAX_ROWS = 10

DIAGNOSTICS_LEGEND = (
    "agree gen / agree test / agree held-out: fraction of the generator step's samples / the test images / the "
    "held-out generated samples on which the student's argmax equals the teacher's; Acc: the test accuracy "
    "(– with no test data); class entropy: entropy of the teacher's predicted classes on the student's generated "
    "batches over log(classes) (1 = every class equally often). Up to 10 epochs per run, evenly spaced, the last "
    "included."
)


def shown_epochs(n_epochs: int, max_rows: int = MAX_ROWS) -> list[int]:
    """Up to ``max_rows`` epochs from 1 to ``n_epochs``, evenly spaced, the first and last included."""
    if n_epochs <= max_rows:
        return list(range(1, n_epochs + 1))
    return sorted({1 + round(i * (n_epochs - 1) / (max_rows - 1)) for i in range(max_rows)})


def has_diagnostics(record: RunRecord) -> bool:
    return any(key in metrics for metrics in record.metrics for key, _ in DIAGNOSTIC_COLUMNS)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def render_diagnostics(records: Sequence[RunRecord]) -> str:
    """One table per run that logged diagnostics (an empty string when none did)."""
    shown = [record for record in records if has_diagnostics(record)]
    if not shown:
        return ""
    lines = ["# Diagnostics per epoch", "", DIAGNOSTICS_LEGEND, ""]
    header = ["Epoch", "Acc (%)", *(heading for _, heading in DIAGNOSTIC_COLUMNS)]
    for record in shown:
        lines += [
            f"## {record.method} (seed {record.seed}) · {record.path}",
            "",
            "| " + " | ".join(header) + " |",
            "| " + " | ".join(["---:"] * len(header)) + " |",
        ]
        for epoch in shown_epochs(len(record.metrics)):
            metrics = record.metrics[epoch - 1]
            cells = [
                str(epoch),
                f"{record.accuracies[epoch - 1]:.2f}" if record.accuracy_measured else "–",
                *(_cell(metrics.get(key)) for key, _ in DIAGNOSTIC_COLUMNS),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def diagnostics_document(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The ``--json`` entries: every epoch's diagnostics of each run that logged them (None where missing)."""
    return [
        {
            "run": str(record.path),
            "epochs": [
                {
                    "epoch": epoch,
                    **{key: metrics.get(key) for key, _ in DIAGNOSTIC_COLUMNS},
                    "gen_class_hist": metrics.get("gen_class_hist"),
                }
                for epoch, metrics in enumerate(record.metrics, start=1)
            ],
        }
        for record in records
        if has_diagnostics(record)
    ]
