"""The long table of a campaign: streamed while it runs, merged and loaded afterwards.

Every recorded row is appended at once, as a line of JSON, to a spool file of its process
(``<report>/.parts/<worker>.jsonl``, flushed per row). Nothing measured is lost when a run is
interrupted, a test fails or an xdist worker dies: the report is built from the spools, by
the controller at the end of the run or later by ``python -m conformance report``.

Rows are merged into one canonical order - sorted by op, implementation, dtype and
direction, each group in the order it was generated - so a run spread over workers gives the
same table as a serial run with the same seed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

IDENTITY = ("implementation", "op", "dtype", "direction", "example_key")
GROUP = ["op", "implementation", "dtype", "direction"]
PARTS = ".parts"
REQUIRED = {*IDENTITY, "verdict", "normalized_error", "bound_ratio"}
# the verdicts that fail a run unless the baseline explains them: a value beyond its bound, an
# exception of the implementation, a call that killed its process or never returned, and the
# suite's own defects (the reference rejecting a valid call, the harness raising)
FAILING = ("fail", "error", "crash", "hang", "oracle error", "harness error")


class ResultsError(ValueError):
    """A results file that cannot be read as a campaign's results; the message is one line."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot record {type(value).__name__}")


class Spool:
    """Appends rows to ``<directory>/.parts/<name>.jsonl``, one flushed line per row."""

    def __init__(self, directory: Path, name: str) -> None:
        parts = directory / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        self.path = parts / f"{name}.jsonl"
        self._stream: TextIO | None = self.path.open("a", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        if self._stream is None:
            return
        self._stream.write(json.dumps(dict(row), default=_plain) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _read_spool(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.endswith("\n"):
                break  # the last line of a process killed mid-write: not a row
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ResultsError(f"{path}:{number}: not a JSON row") from None
            if not isinstance(row, dict) or not REQUIRED <= row.keys():
                raise ResultsError(f"{path}:{number}: not a conformance row")
            rows.append(row)
    return rows


def spool_paths(directory: Path) -> list[Path]:
    return sorted((directory / PARTS).glob("*.jsonl"))


def merge(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per example (a replay replaces the earlier row and moves to the end of its
    group), in canonical order: groups sorted, each in generation order."""
    latest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        key = tuple(row[column] for column in IDENTITY)
        latest.pop(key, None)
        latest[key] = row
    frame = pd.DataFrame(list(latest.values()))
    if frame.empty:
        return frame
    columns = [*GROUP, *sorted(set(frame.columns) - set(GROUP))]  # whichever spool came first
    return frame[columns].sort_values(GROUP, kind="stable").reset_index(drop=True)


def frame_from_spools(directory: Path) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for path in spool_paths(directory):
        rows += _read_spool(path)
    return merge(rows)


def _check_frame(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    missing = REQUIRED - set(frame.columns)
    if frame.empty:
        raise ResultsError(f"{source}: no results in it")
    if missing:
        raise ResultsError(
            f"{source}: not a conformance results table (no {', '.join(sorted(missing))})"
        )
    return frame


def load(path: Path) -> pd.DataFrame:
    """A campaign's rows from results.parquet, results.csv, a report directory or a spool
    directory; ResultsError (one line) for anything else."""
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                return load(path / name)
        if spool_paths(path):
            return _check_frame(frame_from_spools(path), path)
        raise ResultsError(f"{path}: no results.parquet, results.csv or spooled rows in it")
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ResultsError(f"{path}: the file is empty")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix == ".csv":
            with path.open("rb") as stream:
                stream.seek(-1, os.SEEK_END)
                if stream.read(1) != b"\n":  # every results.csv written here ends its line
                    raise ResultsError(f"{path}: truncated (its last line is unfinished)")
            frame = pd.read_csv(path)
        elif path.suffix == ".jsonl":
            frame = merge(_read_spool(path))
        else:
            raise ResultsError(f"{path}: not a .parquet, .csv or .jsonl results file")
    except ResultsError:
        raise
    except Exception as error:  # pyarrow and the CSV parser raise many kinds
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ResultsError(f"{path}: unreadable ({reason})") from None
    return _check_frame(frame, path)


def load_many(paths: Iterable[Path]) -> pd.DataFrame:
    """Rows of several results (shards of one campaign) as one canonical table."""
    frames = [load(path) for path in paths]
    rows = [row for frame in frames for row in frame.to_dict("records")]
    return merge(rows)


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings (None kept): a config column can hold 1 in one row and
    'same' in another, which Parquet's typed columns refuse."""
    ready = frame.copy()
    for column in ready.columns:
        if ready[column].dtype == object:
            ready[column] = [
                None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in ready[column]
            ]
    return ready


def remove_spools(directory: Path) -> None:
    for path in spool_paths(directory):
        path.unlink(missing_ok=True)
    try:
        os.rmdir(directory / PARTS)
    except OSError:
        pass
