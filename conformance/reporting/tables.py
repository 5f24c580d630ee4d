"""The report's tables, computed from the recorded rows: results per group, coverage,
throughput, widened bounds, error conformance, discrepancies. summary.md (report.py) and
report.html (html.py) both render them; neither imports the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from conformance.catalogue.spec import OpSpec
from conformance.reporting.results import FAILING, GROUP
from conformance.reporting.scoreboard import JUDGED


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op x implementation x dtype x direction: counts and the normalized-error spread.

    The error statistics are over the examples the bound judged: those the baseline excuses
    (known) and those the implementation could not express (unsupported) are counted, not
    averaged in."""
    judged = frame["verdict"].isin(JUDGED)
    verdict = frame["verdict"]
    measured = frame.assign(
        normalized_error=frame["normalized_error"].where(judged),
        bound_ratio=frame["bound_ratio"].where(judged),
        _pass=(verdict == "pass").astype(int),
        _known=(verdict == "known").astype(int),
        _widened=(verdict == "widened").astype(int),
        _unsupported=(verdict == "unsupported").astype(int),
        _failed=verdict.isin(FAILING).astype(int),
    )
    grouped = measured.groupby(GROUP, sort=True)
    with np.errstate(invalid="ignore"):  # quantiles of groups holding inf
        table = grouped.agg(
            examples=("verdict", "size"),
            passed=("_pass", "sum"),
            known=("_known", "sum"),
            widened=("_widened", "sum"),
            unsupported=("_unsupported", "sum"),
            failed=("_failed", "sum"),
        )
        errors = grouped["normalized_error"]
        table["p50"] = errors.quantile(0.5)
        table["p99"] = errors.quantile(0.99)
        table["max"] = errors.max()
        table["worst_bound_ratio"] = grouped["bound_ratio"].max()
    return table.reset_index()


def coverage_table(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> pd.DataFrame:
    """Examples hitting each region, per op (region rows x op columns; '' = not a region).

    Catalogue ops list every region they declare (0 = never hit); other checks list the
    regions their rows name."""
    columns: dict[str, dict[str, Any]] = {}
    # rows per op and regions text (a few thousand distinct in a campaign of 500,000 rows),
    # each text split once
    pairs = pd.DataFrame(
        {"op": frame["op"].astype(str), "regions": frame["regions"].fillna("").astype(str)}
    )
    per_op: dict[str, Counter[str]] = {}
    for (op, text), count in pairs.groupby(["op", "regions"], sort=False).size().items():
        found = per_op.setdefault(str(op), Counter())
        for region in set(str(text).split(";")):
            found[region] += int(count)
    catalogue = list(catalogue)
    for spec in catalogue:
        if spec.name not in per_op:
            continue
        counted = per_op[spec.name]
        columns[spec.name] = {region: counted.get(region, 0) for region in spec.coverage}
    listed = {spec.name for spec in catalogue}
    for op, rows in frame[~frame["op"].isin(listed)].groupby("op"):
        # checks outside the catalogue (network arithmetic): the regions they report
        hits = rows["regions"].fillna("").str.split(";").explode()
        columns[str(op)] = {str(k): int(v) for k, v in hits[hits != ""].value_counts().items()}
    table = pd.DataFrame(columns)
    counts = table.astype("object").where(table.notna(), "")
    return counts.map(lambda v: v if v == "" else int(v))


def throughput_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op: examples, how many of them are distinct (the same arrays and config met in
    another group of the op count once) and how many distinct configurations (shapes and
    knobs, whatever the values) they cover, seconds spent measuring them (oracle,
    implementation, error model) and examples per second."""
    if "seconds" not in frame:
        return pd.DataFrame()
    wanted = [c for c in ("op", "verdict", "seconds", "example_key", "example") if c in frame]
    frame = frame.loc[frame["seconds"].notna(), wanted]  # checks that do not time themselves
    if frame.empty:
        return pd.DataFrame()
    grouped = frame.groupby("op", sort=True)
    table = grouped.agg(examples=("verdict", "size"), seconds=("seconds", "sum"))
    if "example_key" in frame:
        table.insert(1, "distinct", grouped["example_key"].nunique())
    if "example" in frame:
        table.insert(2 if "example_key" in frame else 1, "configs", grouped["example"].nunique())
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


ERROR_VERDICT_COLUMNS = {
    "both rejected": "both",
    "only the implementation rejected": "only impl",
    "only the reference rejected": "only ref",
    "neither rejected": "neither",
    "unsupported by the implementation": "unsupported",
}


def error_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op and implementation: invalid calls tried and who rejected them."""
    if "error_verdict" not in frame:
        return pd.DataFrame()
    calls = frame[frame["direction"] == "invalid call"]
    if calls.empty:
        return pd.DataFrame()
    table = pd.crosstab([calls["op"], calls["implementation"]], calls["error_verdict"])
    for verdict in ERROR_VERDICT_COLUMNS:
        if verdict not in table:
            table[verdict] = 0
    table = table[list(ERROR_VERDICT_COLUMNS)].rename(columns=ERROR_VERDICT_COLUMNS)
    table.columns.name = None
    table.insert(0, "tried", table.sum(axis=1))
    named = calls.groupby(["op", "implementation"])["reference_error_names_argument"]
    table["names arg"] = named.apply(lambda v: int((v == True).sum()))  # noqa: E712
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
    failing = frame[frame["verdict"].isin(FAILING)]
    entries = []
    for key, rows in failing.groupby(GROUP, sort=True):
        minimal = rows.iloc[-1]
        entries.append(
            {
                **dict(zip(GROUP, key, strict=True)),
                "count": len(rows),
                "row": minimal.to_dict(),
                "index": rows.index[-1],
            }
        )
    return entries
