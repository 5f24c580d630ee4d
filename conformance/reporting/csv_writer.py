"""results.csv of a large campaign, written by a process of its own while this one renders the
rest of the report.

pandas writes CSV at about 35 MB a second (a thorough campaign's 485,000 rows: 400 MB, 12 s),
on one core, at the end of a run whose workers have finished and left the other cores idle.
The report's results.parquet holds the same table (every object column as strings, which
CSV writes alike): a helper process reads it and writes results.csv, whole or not at all
(results.atomic_write), byte for byte the CSV of the frame itself. Small tables, and any
helper that fails, are written here, as before.

    python -m conformance.reporting.csv_writer RESULTS.parquet RESULTS.csv
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from conformance.reporting.results import atomic_write

# below this many rows a helper's start (interpreter, pandas: about a second) costs more
# than the CSV it would take off this process
BACKGROUND_ROWS = 100_000
_ROOT = Path(__file__).resolve().parents[2]  # where ``conformance`` is importable from


def csv_text(frame: pd.DataFrame) -> str:
    return str(frame.to_csv(index=False))


class CsvWriter:
    """Writes ``frame`` as ``target`` (results.csv): from ``parquet`` in a helper process for a
    large frame, started now; ``finish`` waits for it, and writes it here if it failed."""

    def __init__(self, frame: pd.DataFrame, parquet: Path, target: Path) -> None:
        self.frame, self.target = frame, target
        self.process: subprocess.Popen[bytes] | None = None
        if len(frame) >= BACKGROUND_ROWS:
            path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
            try:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "conformance.reporting.csv_writer", str(parquet),
                     str(target)],
                    env={**os.environ, "PYTHONPATH": path},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            except OSError:
                self.process = None

    def finish(self) -> None:
        if self.process is not None and self.process.wait() == 0:
            return
        atomic_write(self.target, csv_text(self.frame))


def main(argv: Sequence[str] | None = None) -> int:
    parquet, target = (argv if argv is not None else sys.argv[1:])[:2]
    atomic_write(Path(target), csv_text(pd.read_parquet(parquet)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
