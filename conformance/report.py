"""From the recorded rows to the report files: results.csv and summary.md.

Every file is written whole or not at all (a temporary file renamed over the target), so a
reader never sees half a report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from conformance.baseline import KnownDiscrepancy, known_table
from conformance.spec import OpSpec

GROUP = ["op", "implementation", "dtype", "direction"]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op x implementation x dtype x direction: counts and the normalized-error spread."""
    grouped = frame.groupby(GROUP, sort=True)
    table = grouped.agg(
        examples=("verdict", "size"),
        passed=("verdict", lambda v: int((v == "pass").sum())),
        known=("verdict", lambda v: int((v == "known").sum())),
        failed=("verdict", lambda v: int(v.isin(["fail", "error"]).sum())),
        p50=("normalized_error", lambda v: v.quantile(0.5)),
        p99=("normalized_error", lambda v: v.quantile(0.99)),
        max=("normalized_error", "max"),
        worst_bound_ratio=("bound_ratio", "max"),
    )
    return table.reset_index()


def coverage_table(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> pd.DataFrame:
    """Examples hitting each region, per op (region rows x op columns; '' = not a region).

    Catalogue ops list every region they declare (0 = never hit); other checks list the
    regions their rows name."""
    columns: dict[str, dict[str, Any]] = {}
    for spec in catalogue:
        rows = frame[frame["op"] == spec.name]
        if rows.empty:
            continue
        hits = rows["regions"].fillna("").str.split(";")
        columns[spec.name] = {
            region: int(hits.map(lambda names, region=region: region in names).sum())
            for region in spec.coverage
        }
    listed = {spec.name for spec in catalogue}
    for op, rows in frame[~frame["op"].isin(listed)].groupby("op"):
        # checks outside the catalogue (network arithmetic): the regions they report
        hits = rows["regions"].fillna("").str.split(";").explode()
        columns[str(op)] = {str(k): int(v) for k, v in hits[hits != ""].value_counts().items()}
    table = pd.DataFrame(columns)
    return table.astype("object").where(table.notna(), "")


def missed_regions(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> list[str]:
    table = coverage_table(frame, catalogue)
    return [
        f"{op}: {region}" for op in table for region in table.index if table.at[region, op] == 0
    ]


def discrepancies(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per failing op x implementation x dtype x direction: its minimal example."""
    failing = frame[frame["verdict"].isin(["fail", "error"])]
    entries = []
    for key, rows in failing.groupby(GROUP, sort=True):
        minimal = rows.iloc[-1]
        entries.append(
            {**dict(zip(GROUP, key, strict=True)), "count": len(rows), "row": minimal.to_dict()}
        )
    return entries


def _markdown(table: pd.DataFrame, **options: Any) -> str:
    return str(table.to_markdown(floatfmt=".3g", **options))


def render_summary(
    frame: pd.DataFrame,
    header: Mapping[str, Any],
    catalogue: Iterable[OpSpec],
    baseline: list[KnownDiscrepancy] | None = None,
) -> str:
    catalogue = list(catalogue)
    lines = ["# Conformance report", ""]
    lines += [f"- **{name}**: {value}" for name, value in header.items()]
    lines += ["", "## Results", ""]
    lines += [
        "Normalized error = |got - oracle| / (u * sum|a*b| + u_out * |oracle|), the worst "
        "element of each example; p50 / p99 / max are over examples. The proven bound is "
        "about n (terms per sum); bound ratio <= 1 passes.",
        "",
    ]
    if frame.empty:
        lines += ["No examples were recorded.", ""]
        return "\n".join(lines)
    lines += [_markdown(results_table(frame), index=False), ""]
    lines += ["## Coverage", "", "Examples that hit each region of the parameter space.", ""]
    lines += [_markdown(coverage_table(frame, catalogue)), ""]
    missed = missed_regions(frame, catalogue)
    lines += [f"Regions never hit: {', '.join(missed) if missed else 'none'}.", ""]
    known = known_table(frame, baseline or [])
    lines += ["## Known discrepancies (reports/baseline.csv)", ""]
    if known.empty:
        lines += ["None applies to this run.", ""]
    else:
        lines += [
            "Disagreements the baseline explains (examples hitting the region that disagreed); "
            "a stale entry's region was hit without any disagreement.",
            "",
            _markdown(known.drop(columns="reason"), index=False),
            "",
        ]
        lines += [
            f"- **{row.op} {row.direction}, {row.region}**: {row.reason}"
            for row in known.itertuples()
        ]
        lines += [""]
    found = discrepancies(frame)
    lines += ["## Discrepancies", ""]
    if not found:
        lines += ["None.", ""]
    for entry in found:
        row = entry["row"]
        title = " ".join(str(entry[k]) for k in GROUP)
        lines += [
            f"### {title}",
            "",
            f"{entry['count']} failing examples, Hypothesis's shrinking runs included.",
            "",
        ]
        lines += [f"Minimal example: `{row['example_key']}`", "", f"Problem: {row['problem']}", ""]
        if isinstance(row.get("repro"), str):
            lines += ["```python", row["repro"].rstrip(), "```", ""]
    return "\n".join(lines)


def write_report(
    frame: pd.DataFrame,
    directory: Path,
    header: Mapping[str, Any],
    catalogue: Iterable[OpSpec],
    baseline: list[KnownDiscrepancy] | None = None,
) -> None:
    atomic_write(directory / "results.csv", frame.to_csv(index=False))
    atomic_write(directory / "summary.md", render_summary(frame, header, catalogue, baseline))
