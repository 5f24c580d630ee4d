"""The scoreboard: op x implementation, the first table of a report over several
implementations (the ONNX backend scoreboard's shape, every cell resting on proven bounds).

A cell's status is the worst of its examples: FAIL when any example failed (or raised), known
when the baseline explains a disagreement, unsupported when the implementation declared every
example unsupported, pass otherwise. Invalid calls count as examples of their op.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conformance.reporting.results import FAILING

JUDGED = ("pass", "widened", *FAILING)  # verdicts the bound decided
STATUS_ORDER = ("FAIL", "known", "pass", "partly unsupported", "unsupported")


def scoreboard_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per op x implementation: examples, passed (widened included), known,
    unsupported, failed, the worst bound ratio over the judged examples, and the status."""
    if frame.empty:
        return pd.DataFrame()
    verdict = frame["verdict"].astype(str)
    counts = pd.DataFrame(
        {
            "op": frame["op"],
            "implementation": frame["implementation"],
            "examples": 1,
            "passed": verdict.isin(["pass", "widened"]).astype(int),
            "known": (verdict == "known").astype(int),
            "unsupported": (verdict == "unsupported").astype(int),
            "failed": verdict.isin(FAILING).astype(int),
            "judged ratio": np.where(
                verdict.isin(JUDGED), frame["bound_ratio"].astype(float), np.nan
            ),
        }
    )
    table = counts.groupby(["op", "implementation"], sort=True).agg(
        examples=("examples", "sum"),
        passed=("passed", "sum"),
        known=("known", "sum"),
        unsupported=("unsupported", "sum"),
        failed=("failed", "sum"),
        worst_bound_ratio=("judged ratio", "max"),
    )
    table = table.reset_index()
    table["status"] = [_status(row) for row in table.to_dict("records")]
    return table


def _status(row: dict) -> str:
    if row["failed"]:
        return "FAIL"
    if row["unsupported"] == row["examples"]:
        return "unsupported"
    if row["known"]:
        return "known"
    if row["unsupported"]:
        return "partly unsupported"
    return "pass"


def cell_text(row: dict) -> str:
    """A compact cell: passed/examples, then kN known, uN unsupported, FN FAILED (so that a
    grid of seven implementations fits a page)."""
    parts = [f"{row['passed']}/{row['examples']}"]
    for name, mark in (("known", "k"), ("unsupported", "u"), ("failed", "F")):
        if row[name]:
            parts.append(f"{mark}{row[name]}")
    return " ".join(parts)


def scoreboard_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Ops as rows, implementations as columns, each cell its compact text ('' = not run)."""
    if table.empty:
        return pd.DataFrame()
    cells = table.assign(cell=[cell_text(row) for row in table.to_dict("records")])
    matrix = cells.pivot(index="op", columns="implementation", values="cell").fillna("")
    matrix.columns.name = None
    return matrix


def direction_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Implementations as rows, directions (forward, backward, jvp, double backward, invalid
    call) as columns, each cell passed/examples with its kN uN FN marks: which directions each
    implementation was judged in, and how it did in each."""
    if frame.empty:
        return pd.DataFrame()
    renamed = frame.assign(op=frame["direction"].astype(str))
    table = scoreboard_table(renamed)
    matrix = scoreboard_matrix(table).T
    order = [d for d in DIRECTIONS if d in matrix.columns]
    matrix = matrix[order + [d for d in matrix.columns if d not in order]]
    matrix.index.name = None
    return matrix


DIRECTIONS = ("forward", "backward", "jvp", "double_backward", "invalid call")


def status_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """The same grid holding each cell's status (for colouring)."""
    if table.empty:
        return pd.DataFrame()
    matrix = table.pivot(index="op", columns="implementation", values="status").fillna("")
    matrix.columns.name = None
    return matrix
