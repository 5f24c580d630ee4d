"""Two runs compared (two torch versions, say): discrepancies new and fixed, and per group
how the normalized-error distribution moved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from conformance.reporting.results import GROUP
from conformance.reporting.tables import discrepancies, results_table


@dataclass(frozen=True)
class Comparison:
    new_discrepancies: list[tuple[str, ...]]
    fixed_discrepancies: list[tuple[str, ...]]
    shifts: pd.DataFrame  # groups in both runs whose p99 moved by more than the factor
    only_old: list[tuple[str, ...]]
    only_new: list[tuple[str, ...]]


def _groups(frame: pd.DataFrame) -> set[tuple[str, ...]]:
    return {tuple(str(v) for v in key) for key in frame[GROUP].drop_duplicates().to_numpy()}


def _failing(frame: pd.DataFrame) -> set[tuple[str, ...]]:
    return {tuple(str(entry[k]) for k in GROUP) for entry in discrepancies(frame)}


def compare(old: pd.DataFrame, new: pd.DataFrame, factor: float) -> Comparison:
    old_groups, new_groups = _groups(old), _groups(new)
    old_failing, new_failing = _failing(old), _failing(new)
    both = old_groups & new_groups
    table = results_table(old).merge(
        results_table(new), on=GROUP, suffixes=(" old", " new"), how="inner"
    )
    floor = 1e-3  # p99s below a thousandth of u are both "exact"; ratios of them mean nothing
    ratio = (table["p99 new"].clip(lower=floor)) / (table["p99 old"].clip(lower=floor))
    table["p99 ratio"] = ratio
    moved = table[(ratio > factor) | (ratio < 1 / factor)]
    columns = [*GROUP, "examples old", "examples new", "p50 old", "p50 new"]
    columns += ["p99 old", "p99 new", "max old", "max new", "p99 ratio"]
    return Comparison(
        new_discrepancies=sorted((new_failing - old_failing) & new_groups),
        fixed_discrepancies=sorted((old_failing - new_failing) & both),
        shifts=moved[columns].reset_index(drop=True),
        only_old=sorted(old_groups - new_groups),
        only_new=sorted(new_groups - old_groups),
    )


def render(comparison: Comparison, old: Path, new: Path) -> str:
    lines = [f"# Conformance diff: {old} -> {new}", ""]

    def listing(title: str, keys: list[tuple[str, ...]]) -> None:
        lines.extend([f"## {title} ({len(keys)})", ""])
        lines.extend(f"- {' '.join(key)}" for key in keys)
        if not keys:
            lines.append("None.")
        lines.append("")

    listing("New discrepancies", comparison.new_discrepancies)
    listing("Fixed discrepancies", comparison.fixed_discrepancies)
    lines += [f"## Error-distribution shifts ({len(comparison.shifts)})", ""]
    if comparison.shifts.empty:
        lines += ["None beyond the factor.", ""]
    else:
        lines += [str(comparison.shifts.to_markdown(index=False, floatfmt=".3g")), ""]
    listing("Groups only in OLD", comparison.only_old)
    listing("Groups only in NEW", comparison.only_new)
    return "\n".join(lines)
