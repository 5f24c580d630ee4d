"""Where a campaign's time goes: each process adds up its own phases, the controller sums them.

Phases, in worker-seconds (the sum over the processes that ran tests):

- start-up: from the process's start (Linux: /proc; elsewhere: when this module loaded) to
  the first test: interpreter, imports (numpy, pandas, hypothesis, torch), collection;
- generate: Hypothesis drawing each example (``data.draw``: the knobs, then NumPy's fill);
- regions: which of the op's coverage regions each example falls in (some run the reference:
  a residual block's forward, a pooling), for its row and the baseline's isolate entries;
- check: the example checks themselves (oracle, implementation, bound; the row's seconds);
- record: the baseline lookup and the row's recording (spool write), and hypothesis.target;
- hypothesis: the rest of each test call, Hypothesis's engine around the body (its choice
  sequences, replays, shrinking, the health checks);
- other: the rest of the process's time (pytest's per-test set-up and teardown, skipped
  groups, the session's end).

The controller adds ``report``: merging the spools and writing the report files (header.json
and summary.md, which state it, are rendered after it is measured: a few milliseconds). Each
process writes its totals next to its spool (``.parts/<name>.timing.json``) when its session
ends.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PHASES = ("start-up", "generate", "regions", "check", "record", "hypothesis", "other")
BODY = ("generate", "regions", "check", "record")
_LOADED = time.time()
TOTALS: dict[str, float] = dict.fromkeys((*BODY, "test calls"), 0.0)
MARKS: dict[str, float] = {}


def process_started() -> float:
    """When this process started (seconds since the epoch): /proc's start time on Linux,
    otherwise the time this module loaded (imports before it then go uncounted)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    return _LOADED


def add(phase: str, seconds: float) -> None:
    TOTALS[phase] = TOTALS.get(phase, 0.0) + seconds


class Away:
    """Seconds spent away from a phase while inside it, to leave out of it: a generator's
    caller at each of its yields (``with away: yield item``), whose time (recording the row)
    is a phase of its own."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._left = 0.0

    def __enter__(self) -> None:
        self._left = time.perf_counter()

    def __exit__(self, *exception: object) -> None:
        self.seconds += time.perf_counter() - self._left


@contextmanager
def phase(name: str) -> Iterator[Away]:
    """Time inside the block, less what it spends ``with away:`` (yielded)."""
    began = time.perf_counter()
    away = Away()
    try:
        yield away
    finally:
        add(name, time.perf_counter() - began - away.seconds)


def mark(name: str) -> None:
    """The first time a point of the session is reached (the first test)."""
    MARKS.setdefault(name, time.time())


def process_split(ended: float | None = None) -> dict[str, float]:
    """This process's phases, in seconds, ``total`` its wall time from start to ``ended``."""
    started = process_started()
    ended = time.time() if ended is None else ended
    total = max(ended - started, 0.0)
    first = MARKS.get("first test")
    start_up = (first if first is not None else ended) - started
    body = {name: TOTALS.get(name, 0.0) for name in BODY}
    engine = max(TOTALS.get("test calls", 0.0) - sum(body.values()), 0.0)
    split = {"start-up": max(start_up, 0.0), **body, "hypothesis": engine}
    split["other"] = max(total - sum(split.values()), 0.0)
    split["total"] = total
    return split


def write_process_split(directory: Path, name: str) -> None:
    """This process's split next to its spool; replaced whole (rename)."""
    from conformance.reporting.report import atomic_write  # pandas loads only where a session ends

    atomic_write(directory / f"{name}.timing.json", json.dumps(process_split()))


def read_splits(directory: Path) -> list[dict[str, float]]:
    splits = []
    for path in sorted(directory.glob("*.timing.json")):
        try:
            splits.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a process killed while writing it: its time goes unreported
    return splits


def remove_splits(directory: Path) -> None:
    for path in directory.glob("*.timing.json"):
        path.unlink(missing_ok=True)


def summed(splits: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total = dict.fromkeys((*PHASES, "total"), 0.0)
    for split in splits:
        for key in total:
            total[key] += float(split.get(key, 0.0))
    return total


def split_text(
    splits: Iterable[Mapping[str, float]], report_seconds: float | None
) -> dict[str, Any]:
    """The header's lines: worker-seconds per phase with its share, and the checks' share.
    ``report_seconds`` None: not measured yet (report.html is written before it is known;
    summary.md and header.json after)."""
    total = summed(splits)
    worker = total["total"]
    if worker <= 0:
        return {}
    parts = [f"{name} {total[name]:.0f} s ({total[name] / worker:.0%})" for name in PHASES]
    report = "see summary.md" if report_seconds is None else f"{report_seconds:.1f} s"
    return {
        "worker-seconds": round(worker, 1),
        "time split (worker-seconds)": ", ".join(parts) + f"; report (controller) {report}",
        "inside the example checks": f"{total['check'] / worker:.0%} of worker time",
    }
