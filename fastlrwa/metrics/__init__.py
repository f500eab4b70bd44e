"""Per-epoch metrics, the Table-1 percentile statistics and reports.

``table`` holds the pure statistics, ``run_log`` reads and writes a run's ``metrics.jsonl``,
``settings`` says which runs are seeds of one setting, ``summary`` turns runs into table rows,
``render`` formats them, ``plot`` draws Figure 4; ``compare`` holds the two-sample intervals,
``comparisons`` picks the settings to compare (``equal_time`` cuts runs at one training time) and
``render_compare`` formats them; ``report`` builds the whole report (written out by ``fastlrwa.commands.report``).
"""

from fastlrwa.metrics.run_log import MetricsLog, RunRecord, read_run
from fastlrwa.metrics.table import (
    PERCENTILES,
    PercentileStat,
    acc_max,
    aggregate_runs,
    cumulative_mean,
    percentile_stats,
    run_stats,
)

__all__ = [
    "PERCENTILES",
    "MetricsLog",
    "PercentileStat",
    "RunRecord",
    "acc_max",
    "aggregate_runs",
    "cumulative_mean",
    "percentile_stats",
    "read_run",
    "run_stats",
]
