"""The Table-1 statistics of finished runs and their rendering: tables, comparisons, plots.

``table`` holds the pure statistics, ``summary`` turns runs into table rows, ``render`` formats them,
``plot`` draws Figure 4; ``intervals`` holds the two-sample intervals, ``comparisons`` picks the settings
to compare (``equal_time`` cuts runs at one training time) and ``render_compare`` formats them;
``diagnostics`` shows the per-epoch diagnostics; ``build`` builds the whole report (written out by
``fastlrwa.commands.report``). The runs are read through ``fastlrwa.run_log``.
"""
