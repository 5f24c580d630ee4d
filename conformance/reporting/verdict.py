"""The verdict of a run in words: PASS, FAIL or PARTIAL, the counts, one line per failing
group, and the names summary.md, report.html and the terminal share for each group."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

import pandas as pd

from conformance.reporting.results import FAILING, GROUP
from conformance.reporting.tables import discrepancies

# header.json keys that are lists, shown in sections of their own rather than in the header
SHORTFALLS_KEY = "shortfalls"
NOT_RUN_KEY = "not run"
ENDED_KEY = "ended early"
NOT_APPLIED_KEY = "not applied on this platform"
LIST_KEYS = (SHORTFALLS_KEY, NOT_RUN_KEY, ENDED_KEY, NOT_APPLIED_KEY)
WRAP = 100  # prose and lists are wrapped here: no line to scroll sideways through


def wrapped(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WRAP, subsequent_indent=indent, break_on_hyphens=False) or [""]


def group_title(entry: Mapping[str, Any]) -> str:
    return " ".join(str(entry[k]) for k in GROUP)


def repro_name(entry: Mapping[str, Any]) -> str:
    """The file a failing group's repro snippet is written to, inside the report directory."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", group_title(entry).replace(" ", "-"))
    return f"repro/{slug}.py"


def example_text(row: Mapping[str, Any]) -> str:
    """One line describing an example: its shapes and config, and what is special in its
    values (NaN, infinities, -0.0, ties; the values themselves when few)."""
    text = row.get("example")
    line = str(text) if isinstance(text, str) and text else str(row.get("example_key", ""))
    special = row.get("special_values")
    return f"{line}; {special}" if isinstance(special, str) and special else line


def verdict(frame: pd.DataFrame, header: Mapping[str, Any]) -> str:
    """PASS, FAIL or PARTIAL: what the run's exit status says, in a word."""
    shortfalls = header.get(SHORTFALLS_KEY) or []
    if header.get(ENDED_KEY) or (not frame.empty and (discrepancies(frame) or shortfalls)):
        return "FAIL"
    if header.get("partial", "no") != "no":
        return "PARTIAL"
    return "PASS" if not frame.empty else "NOTHING RUN"


def verdict_lines(frame: pd.DataFrame, header: Mapping[str, Any]) -> list[str]:
    """The first screen: the verdict, the counts, and one line per failing group."""
    word = verdict(frame, header)
    counts = frame["verdict"].value_counts() if not frame.empty else pd.Series(dtype=int)
    implementations = sorted(frame["implementation"].astype(str).unique()) if len(frame) else []
    summary = (
        f"**{word}**: {len(frame):,} examples of {frame['op'].nunique() if len(frame) else 0} "
        f"ops through {', '.join(implementations) or 'no implementation'}: "
        + ", ".join(
            f"{int(counts.get(v, 0)):,} {v}"
            for v in ("pass", "widened", "known", "unsupported", *FAILING)
            if counts.get(v, 0) or v == "pass"
        )
        + "."
    )
    lines = wrapped(summary)
    if header.get("partial", "no") != "no":
        lines.append("")
        lines += wrapped(
            f"**PARTIAL REPORT** ({header['partial']}): every example measured before the run "
            "stopped is here; the rest were never measured."
        )
    found = discrepancies(frame) if not frame.empty else []
    if found:
        lines += ["", f"{len(found)} groups disagree with the oracle beyond their bound:", ""]
        for entry in found:
            row = entry["row"]
            problem = str(row.get("problem", ""))
            problem = problem if len(problem) <= 160 else problem[:157] + "..."
            where = (
                f"repro `{repro_name(entry)}`{reproduced_text(row)}"
                if isinstance(row.get("repro"), str)
                else "no repro snippet"
            )
            lines += wrapped(
                f"- **{group_title(entry)}** ({row.get('verdict')}): {problem}; minimal example "
                f"{example_text(row)}; "
                f"{where} (section Discrepancies)",
                "  ",
            )
    ended = header.get(ENDED_KEY) or []
    if ended:
        lines += ["", "Groups that ended early, without a failing example to show why (this "]
        lines[-1] += "fails the run too):"
        lines += [""]
        for line in ended:
            lines += wrapped(f"- {line}", "  ")
    shortfalls = header.get(SHORTFALLS_KEY) or []
    if shortfalls:
        lines += ["", "Fell short of the campaign's depth (this fails the run too):", ""]
        lines += [f"- {line}" for line in shortfalls]
    return lines


def reproduced_text(row: Mapping[str, Any]) -> str:
    """What running the repro in a fresh process showed, for the group's line."""
    found = row.get("reproduced")
    if not isinstance(found, str) or not found:
        return ""
    if found == "yes":
        return ", which reproduces it alone"
    if found == "history-dependent":
        return (
            ", history-dependent: it reproduces only after the calls made before it in the "
            "same process, which it replays first"
        )
    if found == "no":
        return ", which did NOT reproduce it in a fresh process"
    return f" ({found})"
