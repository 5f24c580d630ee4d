"""What a mutation run leaves in reports/mutation/: mutants.csv and mutants.parquet (one row
per mutant: id, module, function, line, operator, the source before and after, the tests and
ops run, the verdict, what killed it, seconds) and report.md (the figures, the survivors with
their diffs, the equivalent mutants with the reason each is equivalent, the killed ones)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = [
    "mutant_id",
    "module",
    "function",
    "line",
    "operator",
    "before",
    "after",
    "tests",
    "ops",
    "verdict",
    "killed_by",
    "problem",
    "explanation",
    "exit_status",
    "seconds",
]


def settle(
    row: dict[str, Any], explained: Mapping[str, str], missed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The row with its final verdict: a survivor the equivalents file explains is
    equivalent (one the weaknesses file explains keeps its verdict, with why the suite
    misses it); a killed mutant either lists is flagged (the entry is wrong)."""
    reason = explained.get(row["mutant_id"], "")
    weakness = (missed or {}).get(row["mutant_id"], "")
    row = {**row, "explanation": reason or weakness}
    if row["verdict"] in ("survived", "equivalent"):
        row["verdict"] = "equivalent" if reason else "survived"
    elif weakness and not reason:
        row["explanation"] = f"LISTED AS A WEAKNESS, BUT {row['verdict'].upper()}: {weakness}"
    elif reason:
        row["explanation"] = f"LISTED AS EQUIVALENT, BUT {row['verdict'].upper()}: {reason}"
    return row


def earlier_rows(out: Path) -> dict[str, dict[str, Any]]:
    """The rows of an earlier run in ``out`` (for --resume), without errors, timeouts and
    mutants that ran no test (those are tried again)."""
    path = out / "mutants.csv"
    if not path.exists():
        return {}
    frame = pd.read_csv(path, keep_default_na=False)
    rows = frame.to_dict("records")
    kept = [r for r in rows if r["verdict"] not in ("error", "timeout") and int(r["tests"])]
    return {r["mutant_id"]: r for r in kept}


def figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts of each verdict and the kill rate over the non-equivalent mutants."""
    counts = {
        v: sum(r["verdict"] == v for r in rows)
        for v in ("killed", "survived", "equivalent", "timeout", "error")
    }
    judged = len(rows) - counts["equivalent"]
    at_import = sum(r["verdict"] == "killed" and r["killed_by"] == "import" for r in rows)
    ran = [float(r["seconds"]) for r in rows if int(r["tests"] or 0) > 0]
    return {
        "mutants": len(rows),
        **counts,
        "killed at import": at_import,
        "kill rate": counts["killed"] / judged if judged else float("nan"),
        "kill rate past import": (counts["killed"] - at_import) / (judged - at_import)
        if judged > at_import
        else float("nan"),
        "median seconds": statistics.median(ran) if ran else 0.0,
        "campaign seconds": sum(ran),
    }


def _write_whole(path: Path, text: str | bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    if isinstance(text, bytes):
        partial.write_bytes(text)
    else:
        partial.write_text(text)
    os.replace(partial, path)


def write(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    settings: Any,
    wall: float,
    final: bool = True,
    command: str = "",
) -> str:
    """mutants.csv, mutants.parquet and report.md (rewritten after every mutant, so that an
    interrupted run leaves what it did); returns the figures' line."""
    frame = pd.DataFrame(list(rows)).reindex(columns=COLUMNS)
    for text in ("killed_by", "problem", "explanation", "ops"):
        frame[text] = frame[text].fillna("").astype(str)
    for column in ("line", "tests", "exit_status", "seconds"):  # a resumed row holds text
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    _write_whole(out / "mutants.csv", frame.to_csv(index=False))
    if final:
        partial = out / "mutants.parquet.partial"
        frame.to_parquet(partial, index=False)
        os.replace(partial, out / "mutants.parquet")
    found = figures(rows)
    _write_whole(out / "report.md", _markdown(frame, found, settings, wall, final, command))
    return (
        f"mutants {found['mutants']}: killed {found['killed']}, survived {found['survived']}, "
        f"equivalent {found['equivalent']}, timeout {found['timeout']}, error {found['error']}; "
        f"kill rate {found['kill rate']:.1%} of the non-equivalent; wall {wall:.0f} s, "
        f"median {found['median seconds']:.1f} s per mutant campaign"
    )


def _block(text: str) -> list[str]:
    return ["```diff", text, "```", ""]


def _diff(row: Mapping[str, Any]) -> str:
    minus = "\n".join(f"- {line}" for line in str(row["before"]).splitlines())
    plus = "\n".join(f"+ {line}" for line in str(row["after"]).splitlines())
    return f"{minus}\n{plus}"


def _markdown(
    frame: pd.DataFrame,
    found: Mapping[str, Any],
    settings: Any,
    wall: float,
    final: bool,
    command: str,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    state = "" if final else " (PARTIAL: the run is still going or was interrupted)"
    lines = [
        f"# Mutation run of the reference{state}",
        "",
        "Each mutant is a copy of `reference/` with one small change in one op module, run as "
        "the implementation under test (`mutant_reference.api`) against the unmutated "
        f"reference: the campaign at depth `{settings.profile}`, float64, seed "
        f"{settings.seed}, only the campaign tests that execute the mutated line (a trace of "
        "the unmutated copy under the same seed says which), stopping at the first failing "
        "group. Killed: the campaign failed with a failing example. Equivalent: survived, "
        "and `equivalents.toml` explains why no input can tell it from the reference (or why it "
        "differs only where the suite makes no claim); a survivor not listed there is a weakness "
        "of the suite, and `weaknesses.toml` says why the suite misses it. "
        "`python -m conformance.bench.mutation` made this file; `mutants.csv` has every row.",
        "",
        f"- **when**: {when}",
        f"- **command**: `{command}`",
        f"- **mutants**: {found['mutants']}",
        f"- **killed**: {found['killed']}, of which {found['killed at import']} at import (the "
        "mutated package does not import: the run stops before any example)",
        f"- **survived** (not equivalent): {found['survived']}",
        f"- **equivalent**: {found['equivalent']}",
        f"- **timeout / error**: {found['timeout']} / {found['error']}",
        f"- **kill rate** (killed / non-equivalent): {found['kill rate']:.1%}; without the "
        f"mutants killed at import: {found['kill rate past import']:.1%}",
        f"- **wall**: {wall:.0f} s; mutant campaigns {found['campaign seconds']:.0f} s, "
        f"median {found['median seconds']:.1f} s",
        "",
        "## By module",
        "",
        _counts(frame, "module"),
        "",
        "## By operator",
        "",
        _counts(frame, "operator"),
        "",
        "## Survivors: weaknesses of the suite",
        "",
    ]
    survivors = frame[frame["verdict"].isin(["survived", "timeout", "error"])]
    if survivors.empty:
        lines += ["None.", ""]
    for row in survivors.to_dict("records"):
        lines += [
            f"### `{row['mutant_id']}` ({row['verdict']})",
            "",
            f"`reference/{row['module']}.py` line {row['line']}, `{row['function']}`, "
            f"operator {row['operator']}; tests run: {row['tests']} "
            f"({row['ops'] or 'none'}). {row['problem'] or ''}",
            "",
            f"Why the suite misses it: {row['explanation'] or 'not examined yet.'}",
            "",
            *_block(_diff(row)),
        ]
    lines += ["## Equivalent mutants", ""]
    equivalent = frame[frame["verdict"] == "equivalent"]
    if equivalent.empty:
        lines += ["None.", ""]
    for row in equivalent.to_dict("records"):
        lines += [
            f"### `{row['mutant_id']}`",
            "",
            f"`reference/{row['module']}.py` line {row['line']}, `{row['function']}`. "
            f"{row['explanation']}",
            "",
            *_block(_diff(row)),
        ]
    killed = frame[frame["verdict"] == "killed"]
    lines += ["## Killed", "", "Each mutant, the group that failed first and how.", ""]
    table = killed[["mutant_id", "line", "tests", "killed_by", "problem", "seconds"]].copy()
    table["problem"] = table["problem"].str.slice(0, 90)
    lines += [table.to_markdown(index=False) if not table.empty else "None.", ""]
    listed = frame[frame["explanation"].fillna("").str.startswith("LISTED AS")]
    if not listed.empty:
        lines += [
            "## Stale entries",
            "",
            "Listed as equivalent or as a weakness, but killed: the entry is wrong.",
            "",
            *[f"- `{m}`" for m in listed["mutant_id"]],
            "",
        ]
    return "\n".join(lines)


def _counts(frame: pd.DataFrame, by: str) -> str:
    table = pd.crosstab(frame[by], frame["verdict"])
    for verdict in ("killed", "survived", "equivalent"):
        if verdict not in table.columns:
            table[verdict] = 0
    table["mutants"] = table.sum(axis=1)
    judged = table["mutants"] - table["equivalent"]
    table["kill rate"] = (table["killed"] / judged.where(judged > 0)).map(
        lambda rate: "-" if pd.isna(rate) else f"{rate:.0%}"
    )
    return str(table.reset_index().to_markdown(index=False))
