"""Per-epoch metrics, the Table-1 percentile statistics and reports.

``table`` holds the pure statistics, ``run_log`` reads and writes a run's ``metrics.jsonl``,
``summary`` turns runs into table rows, ``render`` formats them, ``plot`` draws Figure 4 and
``report`` is the ``fastlrwa report`` command.
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
