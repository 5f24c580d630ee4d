"""One row per generated example; Hypothesis's replays of an example replace its row.

Hypothesis runs the minimal failing example once more at the end of shrinking; that replay
moves the row to the end, so the last failing row of a test is its minimal example. Each row
is also appended to the process's spool (conformance.reporting.results) the moment it is recorded.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from conformance.reporting.results import IDENTITY, Spool


class Recorder:
    def __init__(self, spool: Spool | None = None) -> None:
        self._rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.spool = spool

    def record(self, row: dict[str, Any]) -> None:
        key = tuple(row[column] for column in IDENTITY)
        self._rows.pop(key, None)
        self._rows[key] = row
        if self.spool is not None:
            self.spool.write(row)

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows.values()))
