"""From the recorded rows to the report files: summary.md, report.html, results.parquet,
results.csv and header.json (the run's environment, for re-rendering).

Every file is written whole or not at all (a temporary file renamed over the target), so a
reader never sees half a report.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from conformance.catalogue.spec import OpSpec
from conformance.reporting.baseline import KnownDiscrepancy, known_table, unconfirmed
from conformance.reporting.csv_writer import CsvWriter
from conformance.reporting.results import atomic_write, parquet_ready
from conformance.reporting.scoreboard import (
    direction_matrix,
    scoreboard_matrix,
    scoreboard_table,
)
from conformance.reporting.tables import (
    coverage_table,
    discrepancies,
    error_table,
    results_table,
    throughput_table,
    widened_table,
)
from conformance.reporting.verdict import (
    LIST_KEYS,
    NOT_RUN_KEY,
    example_text,
    group_title,
    repro_name,
    verdict,
    verdict_lines,
    wrapped,
)


def _markdown(table: pd.DataFrame, **options: Any) -> str:
    return str(table.to_markdown(floatfmt=".3g", **options))


COMPACT_DIRECTIONS = ("forward", "backward", "jvp", "double_backward")


def compact_results(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per op x implementation, a column per dtype: each cell the outcome of each
    direction that ran (forward / backward / jvp / double backward: 'ok', 'FAIL n',
    'known n', 'wide n', 'unsup n'; '-' not run)."""
    table = results_table(frame)
    table = table[table["direction"] != "invalid call"]
    if table.empty:
        return pd.DataFrame()

    def outcome(group: pd.DataFrame) -> str:
        if group.empty:
            return "-"
        row = group.iloc[0]
        for column, word in (
            ("failed", "FAIL"),
            ("known", "known"),
            ("widened", "wide"),
            ("unsupported", "unsup"),
        ):
            if row[column]:
                return f"{word} {int(row[column])}"
        return "ok"

    # the directions any op ran in, in their order: a cell lists each one's outcome
    directions = [d for d in COMPACT_DIRECTIONS if (table["direction"] == d).any()]
    rows = []
    for (op, name), rows_of in table.groupby(["op", "implementation"], sort=True):
        row: dict[str, Any] = {"op": op, "implementation": name}
        for dtype in [d for d in ("float64", "float32", "float16", "bfloat16")]:
            of_dtype = rows_of[rows_of["dtype"] == dtype]
            outcomes = [outcome(of_dtype[of_dtype["direction"] == d]) for d in directions]
            row[dtype] = "-" if set(outcomes) == {"-"} else " / ".join(outcomes)
        row["examples"] = int(rows_of["examples"].sum())
        row["worst ratio"] = rows_of["worst_bound_ratio"].max()
        rows.append(row)
    return pd.DataFrame(rows)


def coverage_lines(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> list[str]:
    """Per op, each region and its examples, wrapped; a region never hit in bold."""
    table = coverage_table(frame, catalogue)
    lines = []
    for op in table.columns:
        hits = [
            f"**{region} 0**" if table.at[region, op] == 0 else f"{region} {table.at[region, op]}"
            for region in table.index
            if table.at[region, op] != ""
        ]
        lines += wrapped(f"- **{op}**: " + " · ".join(hits), "  ")
    return lines


def render_summary(
    frame: pd.DataFrame,
    header: Mapping[str, Any],
    catalogue: Iterable[OpSpec],
    baseline: list[KnownDiscrepancy] | None = None,
) -> str:
    catalogue = list(catalogue)
    word = verdict(frame, header)
    lines = [f"# Conformance report: {word}", ""]
    lines += verdict_lines(frame, header)
    lines += ["", "## Run", ""]
    for name, value in header.items():
        if name not in LIST_KEYS:
            lines += wrapped(f"- **{name}**: {value}", "  ")
    lines += [""]
    if frame.empty:
        lines += ["No examples were recorded.", ""]
        return "\n".join(lines)
    board = scoreboard_table(frame)
    if board["implementation"].nunique() > 1:
        lines += ["## Scoreboard", ""]
        lines += wrapped(
            "Op x implementation: passed/examples (passed within the bound, widened "
            "included), then kN: N known (disagreements the baseline explains, a recorded bug "
            "of that implementation), uN: N unsupported (the implementation cannot express "
            "them), FN: N FAILED; empty: not run. The long form, with the worst bound ratio "
            "over the judged examples and each cell's status, follows."
        )
        long_form = board.rename(columns={"examples": "n", **SHORT_COLUMNS})
        lines += ["", _markdown(scoreboard_matrix(board)), ""]
        lines += wrapped("The same examples by direction (every op together):")
        lines += ["", _markdown(direction_matrix(frame)), "", _markdown(long_form, index=False)]
        lines += [""]
    lines += ["## Results", ""]
    lines += wrapped(
        "Per op and implementation, in each dtype the outcome of each direction that ran, "
        "forward / backward / jvp (forward-mode derivative) / double backward (second "
        "derivatives), as far as the op has them: ok (every example within "
        "its bound), FAIL n, known n (explained by the baseline), wide n (within the tested "
        "dtype's own precision only, see Accumulation precision), unsup n (not expressible by "
        "the implementation), - (not run). Worst ratio: the largest error / bound over the "
        "judged examples (<= 1 passes)."
    )
    compact = compact_results(frame)
    for dtypes in (("float64", "float32"), ("float16", "bfloat16")):
        ran = [d for d in dtypes if d in compact]
        if ran and not (compact[ran] == "-").all().all():
            lines += ["", _markdown(compact[["op", "implementation", *ran]], index=False)]
    if "examples" in compact:
        examples = compact[["op", "implementation", "examples", "worst ratio"]]
        lines += ["", _markdown(examples, index=False), ""]
    else:
        lines += ["", "No example was measured (invalid calls only).", ""]
    not_run = header.get(NOT_RUN_KEY) or []
    lines += ["## Not run", ""]
    if not_run:
        lines += [*wrapped("Groups skipped as a whole, with the reason:"), ""]
        for line in not_run:
            lines += wrapped(f"- {line}", "  ")
        lines += [""]
    else:
        lines += ["Every selected group ran.", ""]
    lines += ["## Coverage", ""]
    lines += wrapped(
        "Examples that hit each region of each op's parameter space (bold: never hit)."
    )
    lines += ["", *coverage_lines(frame, catalogue), ""]
    widened = widened_table(frame)
    lines += ["## Accumulation precision", ""]
    if widened.empty:
        lines += ["Every example held the accumulation precision its implementation declares.", ""]
    else:
        lines += wrapped(
            "Findings: examples that failed the bound of the accumulation dtype the "
            "implementation declares, but pass it computed in the tested dtype itself "
            "(intermediates rounded to it). Not failures; not what was declared either."
        )
        lines += ["", _markdown(widened.drop(columns="example"), index=False), ""]
    errors = error_table(frame)
    lines += ["## Error conformance", ""]
    if errors.empty:
        lines += ["No invalid calls were tried.", ""]
    else:
        lines += wrapped(
            "Invalid calls (a valid example broken by one rule): both must reject. 'only impl' = "
            "only the implementation rejected it; 'only ref' = only the reference did; "
            "'neither' = the rule binds neither (not a failure); 'unsupported' = the "
            "implementation cannot express the call; 'names arg' = the reference's error "
            "names the argument; known = explained by the baseline."
        )
        lines += ["", _markdown(errors, index=False), ""]
    known = known_table(frame, baseline or [])
    lines += ["## Known discrepancies (the baseline)", ""]
    versions = {k: str(v) for k, v in header.items() if isinstance(v, str)}
    not_confirmed = unconfirmed(frame, baseline or [], versions, known)
    if not_confirmed:
        lines += wrapped(
            "Entries confirmed with another version than this run's, which this run did not "
            "confirm (no disagreement in their region):"
        )
        lines += ["", *[f"- {line}" for line in not_confirmed], ""]
    if known.empty:
        lines += ["None applies to this run.", ""]
    else:
        lines += wrapped(
            "Disagreements the baseline explains (examples hitting the region that disagreed); "
            "a stale entry's region was hit without any disagreement."
        )
        shown = known.drop(columns=["reason", "confirmed with"]).rename(
            columns={"implementation": "impl", "examples in region": "in region"}
        )
        lines += ["", _markdown(shown, index=False), ""]
        for row in known.to_dict("records"):
            lines += wrapped(
                f"- **{row['op']} {row['direction']}, {row['region']}** (confirmed with "
                f"{row['confirmed with'] or 'an unstated version'}): {row['reason']}",
                "  ",
            )
        lines += [""]
    found = discrepancies(frame)
    lines += ["## Discrepancies", ""]
    if not found:
        lines += ["None.", ""]
    for entry in found:
        row = entry["row"]
        lines += [f"### {group_title(entry)}", ""]
        lines += wrapped(
            f"{entry['count']} failing examples (Hypothesis's shrinking replays included); a "
            "failing group stops generating at its first failure and shrinks it, so its "
            "example count is not a thin group."
        )
        lines += [""]
        lines += wrapped(f"Minimal example: {example_text(row)}")
        lines += ["", *wrapped(f"Problem: {row['problem']}"), ""]
        if isinstance(row.get("repro"), str):
            lines += wrapped(
                f"Repro: `{repro_name(entry)}` in the report directory (NumPy and the "
                "implementation only; run it with python where the implementation imports) "
                "prints each output's error against its bound."
            )
            lines += [""]
    throughput = throughput_table(frame)
    if not throughput.empty:
        lines += ["## Throughput", ""]
        lines += wrapped(
            "Slowest ops first. distinct: different examples among them (the same arrays and "
            "config drawn by several groups of the op count once); configs: different shapes "
            "and knobs, whatever the values; "
            "seconds: inside the example checks (oracle, implementation, bound)."
        )
        lines += [""]
        lines += [_markdown(throughput, index=False), ""]
    lines += ["## Results in full", ""]
    lines += wrapped(
        "Per op x implementation x dtype x direction. Normalized error = |got - oracle| / "
        "(u * sum|a*b| + u_out * |oracle|), the worst element of each example; p50 / p99 / max "
        "over the judged examples (known and unsupported ones are counted, not included). The "
        "proven bound is about n (terms per sum); bound ratio <= 1 passes."
    )
    full = results_table(frame).rename(columns=SHORT_COLUMNS)
    lines += ["", _markdown(full, index=False), ""]
    return "\n".join(lines)


SHORT_COLUMNS = {
    "implementation": "impl",
    "direction": "dir",
    "examples": "n",
    "passed": "pass",
    "widened": "wide",
    "unsupported": "unsup",
    "failed": "fail",
    "worst_bound_ratio": "worst ratio",
}


def write_report(
    frame: pd.DataFrame,
    directory: Path,
    header: Mapping[str, Any],
    catalogue: Iterable[OpSpec],
    baseline: list[KnownDiscrepancy] | None = None,
    late: Callable[[], Mapping[str, Any]] | None = None,
) -> None:
    """The five report files; each replaces its predecessor whole. header.json and summary.md
    come last (results.csv of a large table is written meanwhile by a helper process:
    csv_writer), with what ``late()`` adds to the header then (the report's own time, which
    report.html, written before it is known, does not state)."""
    from conformance.reporting.html import render_html  # matplotlib loads only for a report

    catalogue = list(catalogue)
    parquet = io.BytesIO()
    parquet_ready(frame).to_parquet(parquet, index=False)
    atomic_write(directory / "results.parquet", parquet.getvalue())
    # a large table's CSV from results.parquet in a process of its own, meanwhile
    csv = CsvWriter(frame, directory / "results.parquet", directory / "results.csv")
    for entry in discrepancies(frame):
        if isinstance(entry["row"].get("repro"), str):
            atomic_write(directory / repro_name(entry), entry["row"]["repro"])
    atomic_write(directory / "report.html", render_html(frame, header, catalogue, baseline))
    csv.finish()
    if late is not None:
        header = {**header, **late()}
    atomic_write(directory / "header.json", json.dumps(dict(header), indent=1, default=str))
    atomic_write(directory / "summary.md", render_summary(frame, header, catalogue, baseline))
