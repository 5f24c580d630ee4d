"""What the campaign says in the terminal: a progress line every few seconds, and at the end
the verdict with each failing group's problem, minimal example and repro."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.reporting.tables import discrepancies
from conformance.reporting.verdict import (
    ENDED_KEY,
    SHORTFALLS_KEY,
    example_text,
    group_title,
    repro_name,
    reproduced_text,
    verdict,
)


def show_progress(config: pytest.Config, progress: dict[str, Any], final: bool = False) -> None:
    """A line a person can follow: groups done of total, examples, elapsed, what remains."""
    if not config.getoption("conformance_progress"):
        return
    now = time.time()
    # every 5 s at most (a group ending is the occasion), and when the last one ends
    finished = progress["done"] >= progress["total"]
    if not final and not finished and now - progress["shown"] < 5:
        return
    progress["shown"] = now
    elapsed = now - progress["began"]
    done, total = progress["done"], progress["total"]
    remaining = elapsed / done * (total - done) if done else float("nan")
    estimate = f"about {remaining:.0f} s left" if done else "estimating"
    line = (
        f"conformance: {done}/{total} groups, {progress['examples']:,} examples, "
        f"{elapsed:.0f} s elapsed, {estimate}"
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def terminal_lines(
    frame: Any, directory: str | None, shortfalls: list[str], ended: list[str], partial: str
) -> Iterator[tuple[str, bool]]:
    """(line, whether it is red): what fell short or ended early, then each failing group,
    then the verdict."""
    for shortfall in shortfalls:
        yield f"conformance: FAILED: {shortfall}", True
    for line in ended:
        yield f"conformance: FAILED, ended early: {line}", True
    if directory is None or frame is None or (frame.empty and not ended):
        return
    found = discrepancies(frame)
    for entry in found:
        row = entry["row"]
        yield f"conformance: FAILED {group_title(entry)} ({row.get('verdict')})", True
        yield f"  problem: {row.get('problem')}", False
        yield f"  minimal example: {example_text(row)}", False
        if isinstance(row.get("repro"), str):
            yield (
                f"  repro: python {Path(directory) / repro_name(entry)}{reproduced_text(row)}",
                False,
            )
    header = {SHORTFALLS_KEY: shortfalls, ENDED_KEY: ended, "partial": partial}
    yield (
        (
            f"conformance: {verdict(frame, header)}: {len(frame):,} examples, {len(found)} "
            f"discrepant groups; report in {directory}/summary.md"
        ),
        False,
    )
