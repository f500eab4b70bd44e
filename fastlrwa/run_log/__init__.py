"""What a run writes as it trains, and how it is read back.

``metrics_file`` reads and writes a run's ``metrics.jsonl`` (one line per epoch) beside its ``config.json``,
``event_log`` writes its TensorBoard events, ``settings`` says which runs are seeds of one setting and how a
setting is named (a sweep names its run directories with it). The trainer writes these files;
``fastlrwa.report`` and ``fastlrwa sweep`` read them.
"""
