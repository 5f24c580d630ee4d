"""From the recorded rows to the report files: summary.md, report.html, results.parquet,
results.csv and header.json (the run's environment, for re-rendering).

Every file is written whole or not at all (a temporary file renamed over the target), so a
reader never sees half a report.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conformance.baseline import KnownDiscrepancy, known_table, unconfirmed
from conformance.results import GROUP, parquet_ready
from conformance.scoreboard import JUDGED, scoreboard_matrix, scoreboard_table
from conformance.spec import OpSpec


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


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op x implementation x dtype x direction: counts and the normalized-error spread.

    The error statistics are over the examples the bound judged: those the baseline excuses
    (known) and those the implementation could not express (unsupported) are counted, not
    averaged in."""
    judged = frame["verdict"].isin(JUDGED)
    measured = frame.assign(
        normalized_error=frame["normalized_error"].where(judged),
        bound_ratio=frame["bound_ratio"].where(judged),
    )
    grouped = measured.groupby(GROUP, sort=True)
    with np.errstate(invalid="ignore"):  # quantiles of groups holding inf
        table = grouped.agg(
            examples=("verdict", "size"),
            passed=("verdict", lambda v: int((v == "pass").sum())),
            known=("verdict", lambda v: int((v == "known").sum())),
            widened=("verdict", lambda v: int((v == "widened").sum())),
            unsupported=("verdict", lambda v: int((v == "unsupported").sum())),
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


def throughput_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op: examples, seconds spent measuring them (oracle, implementation, error model)
    and examples per second."""
    if "seconds" not in frame:
        return pd.DataFrame()
    table = frame.groupby("op", sort=True).agg(
        examples=("verdict", "size"), seconds=("seconds", "sum")
    )
    table["examples/s"] = table["examples"] / table["seconds"]
    return table.reset_index().sort_values("examples/s")


def widened_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Groups where the implementation kept only its dtype's own precision, not the wider
    accumulation it declared (verdict 'widened')."""
    if "widened_from" not in frame:
        return pd.DataFrame()
    rows = frame[frame["verdict"] == "widened"]
    if rows.empty:
        return pd.DataFrame()
    table = rows.groupby(GROUP, sort=True).agg(
        examples=("verdict", "size"),
        declared=("widened_from", "first"),
        example=("widened_problem", "last"),
    )
    return table.reset_index()


def error_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op and implementation: invalid calls tried and who rejected them."""
    if "error_verdict" not in frame:
        return pd.DataFrame()
    calls = frame[frame["direction"] == "invalid call"]
    if calls.empty:
        return pd.DataFrame()
    table = pd.crosstab([calls["op"], calls["implementation"]], calls["error_verdict"])
    for verdict in (
        "both rejected",
        "only the implementation rejected",
        "only the reference rejected",
        "neither rejected",
    ):
        if verdict not in table:
            table[verdict] = 0
    table.insert(0, "tried", table.sum(axis=1))
    named = calls.groupby(["op", "implementation"])["reference_error_names_argument"]
    table["reference error names the argument"] = named.apply(lambda v: int((v == True).sum()))  # noqa: E712
    table["known"] = calls.groupby(["op", "implementation"])["verdict"].apply(
        lambda v: int((v == "known").sum())
    )
    return table.reset_index()


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
    if header.get("partial", "no") != "no":
        lines += [
            f"**PARTIAL REPORT** ({header['partial']}): every example measured before the "
            "run stopped is here; the rest were never measured.",
            "",
        ]
    lines += [f"- **{name}**: {value}" for name, value in header.items()]
    board = scoreboard_table(frame)
    if not frame.empty and board["implementation"].nunique() > 1:
        lines += ["", "## Scoreboard", ""]
        lines += [
            "Op x implementation: examples that passed their bound (widened included) of all "
            "examples, then those the baseline explains (known), those the implementation "
            "cannot express (unsupported) and those that FAILED. The long form, with the "
            "worst bound ratio over the judged examples, follows.",
            "",
            _markdown(scoreboard_matrix(board)),
            "",
            _markdown(board, index=False),
        ]
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
    widened = widened_table(frame)
    lines += ["## Accumulation precision", ""]
    if widened.empty:
        lines += ["Every example held the accumulation precision its implementation declares.", ""]
    else:
        lines += [
            "Findings: examples that failed the bound of the accumulation dtype the "
            "implementation declares, but pass it computed in the tested dtype itself "
            "(intermediates rounded to it). Not failures; not what was declared either.",
            "",
            _markdown(widened, index=False),
            "",
        ]
    errors = error_table(frame)
    lines += ["## Error conformance", ""]
    if errors.empty:
        lines += ["No invalid calls were tried.", ""]
    else:
        lines += [
            "Invalid calls (a valid example broken by one rule): both must reject. Only the "
            "implementation rejected = the reference is too permissive; only the reference = "
            "too strict; neither = the rule binds neither (not a failure). known = explained "
            "by the baseline.",
            "",
            _markdown(errors, index=False),
            "",
        ]
    throughput = throughput_table(frame)
    if not throughput.empty:
        lines += ["## Throughput", "", "Slowest ops first.", ""]
        lines += [_markdown(throughput, index=False), ""]
    known = known_table(frame, baseline or [])
    lines += ["## Known discrepancies (reports/baseline.csv)", ""]
    versions = {k: str(v) for k, v in header.items() if isinstance(v, str)}
    not_confirmed = unconfirmed(frame, baseline or [], versions)
    if not_confirmed:
        lines += [
            "Entries confirmed with another version than this run's, which this run did not "
            "confirm (no disagreement in their region):",
            "",
            *[f"- {line}" for line in not_confirmed],
            "",
        ]
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
    """The five report files; each replaces its predecessor whole."""
    from conformance.html import render_html  # matplotlib loads only for a report

    catalogue = list(catalogue)
    parquet = io.BytesIO()
    parquet_ready(frame).to_parquet(parquet, index=False)
    atomic_write(directory / "results.parquet", parquet.getvalue())
    atomic_write(directory / "results.csv", frame.to_csv(index=False))
    atomic_write(directory / "header.json", json.dumps(dict(header), indent=1, default=str))
    summary = render_summary(frame, header, catalogue, baseline)
    atomic_write(directory / "summary.md", summary)
    atomic_write(directory / "report.html", render_html(frame, header, catalogue, baseline))
