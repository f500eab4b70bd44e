"""Per-epoch metrics, the Table-1 percentile statistics and reports."""
