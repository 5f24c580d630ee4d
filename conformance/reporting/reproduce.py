"""A repro that proves itself: before a failing group's repro is written as its evidence, it
is run in a fresh process, and the report says what happened.

- ``yes``: it reproduced alone (exit 1);
- ``history-dependent``: alone it did not, but it did after the calls made before it in the
  campaign's process, replayed first (``history_repro``, which then becomes the repro);
- ``no``: it did not reproduce either way (exit 0): the discrepancy depends on something the
  repro does not carry (the process's state further back, the machine's load);
- ``could not run``: the repro itself failed (exit 2: an import, or it timed out).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from conformance.reporting.tables import discrepancies

TIMEOUT_S = 180.0
AT_MOST = 24  # groups checked per run: the rest say 'not checked'
HISTORY_DEPENDENT = "history-dependent"


def _run(script: str) -> tuple[int | None, str]:
    """(exit status or None for a timeout, its last line) of a script in a fresh interpreter,
    run where the campaign ran (the implementation imports from there)."""
    handle, path = tempfile.mkstemp(prefix="conformance-repro-", suffix=".py")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(script)
    try:
        done = subprocess.run(
            [sys.executable, path],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            cwd=os.getcwd(),
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT_S:g} s"
    finally:
        os.unlink(path)
    said = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return done.returncode, said[-1][:300] if said else ""


def check_row(row: dict[str, Any]) -> tuple[str, str, str | None]:
    """(reproduced, what the repro said, the repro to keep when it is not ``row['repro']``)."""
    script = row.get("repro")
    if not isinstance(script, str) or not script:
        return "no repro", "", None
    status, said = _run(script)
    if status == 1:
        return "yes", said, None
    history = row.get("history_repro")
    if status == 0 and isinstance(history, str) and history:
        again, said_again = _run(history)
        if again == 1:
            return HISTORY_DEPENDENT, said_again, history
        if again not in (0, 1):
            return "could not run", said_again, None
    if status == 0:
        return "no", said, None
    return "could not run", said, None


def verify(frame: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """The frame with each failing group's minimal row marked ``reproduced`` (and
    ``reproduced_said``), its repro replaced by the history-dependent one where only that one
    reproduced."""
    found = discrepancies(frame)
    if not found:
        return frame
    frame = frame.copy()
    for column in ("reproduced", "reproduced_said"):
        if column not in frame:
            frame[column] = None
        frame[column] = frame[column].astype(object)
    checked, skipped = found[:AT_MOST], found[AT_MOST:]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda entry: check_row(entry["row"]), checked))
    for entry, (reproduced, said, replacement) in zip(checked, results, strict=True):
        index = entry["index"]
        frame.at[index, "reproduced"] = reproduced
        frame.at[index, "reproduced_said"] = said
        if replacement is not None:
            if "repro_alone" not in frame:
                frame["repro_alone"] = None
                frame["repro_alone"] = frame["repro_alone"].astype(object)
            frame.at[index, "repro_alone"] = frame.at[index, "repro"]
            frame.at[index, "repro"] = replacement
    for entry in skipped:
        frame.at[entry["index"], "reproduced"] = f"not checked (more than {AT_MOST} groups)"
    return frame
