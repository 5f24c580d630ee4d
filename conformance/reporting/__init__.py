"""What a run leaves: the results table, the report's tables, summary.md and report.html,
the scoreboard, the diff of two runs, the baseline of known discrepancies, and the check
that a repro reproduces."""
