"""What a run owes its verdict beyond the failing examples: groups thinner than the
profile's minimum, coverage regions never hit, and groups whose test failed without a
failing row to say why (ended early); so that the verdict line, summary.md and the exit
status always agree."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.catalogue import CATALOGUE
from conformance.reporting.results import FAILING, GROUP
from conformance.reporting.tables import missed_regions, results_table


def shortfalls(minimum: int, frame: Any, coverage: bool = True) -> list[str]:
    """What falls short of --conformance-min-examples: thin groups and unhit regions (not
    judged with ``coverage`` False: a -k or -m selection ran part of each op's groups, and a
    region the left-out groups would hit is not missing)."""
    if not minimum or frame.empty:
        return []
    table = results_table(frame)
    # A failing group stops at its first failure (Hypothesis then shrinks it): its count is
    # not thin, and an op with a failing group is not judged on coverage either.
    thin = table[(table["examples"] < minimum) & (table["failed"] == 0)]
    found = [
        f"{row.op} {row.implementation} {row.dtype} {row.direction}: {row.examples} examples"
        f" < {minimum}"
        for row in thin.itertuples()
    ]
    if not coverage:
        return found
    failing_ops = set(table.loc[table["failed"] > 0, "op"])
    missed = [m for m in missed_regions(frame, CATALOGUE) if m.split(":")[0] not in failing_ops]
    return found + [f"coverage region never hit: {m}" for m in missed]


def group_of(item: pytest.Item) -> str:
    """The report's group of a test, 'ops|implementation|dtype|direction', as far as its
    parameters say ('' where they do not: any; an invalid-call test's direction is 'invalid
    call'; a network-arithmetic test names its ops)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    spec = params.get("spec")
    ops = getattr(getattr(item, "function", None), "arithmetic_ops", None)
    op = getattr(spec, "name", "") or ",".join(ops or ()) or getattr(item, "name", "")
    implementation = getattr(getattr(item, "funcargs", {}).get("implementation"), "name", "")
    direction = params.get("direction") or (
        "invalid call" if getattr(item, "originalname", "") == "test_invalid_call" else ""
    )
    return "|".join((str(op), str(implementation), str(params.get("dtype", "")), direction))


def last_words(report: pytest.TestReport) -> str:
    """What a failed test said last: its innermost error line ('E   ...'), else its last
    line that is not drawing."""
    lines = report.longreprtext.strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ") and line[1:].strip()]
    plain = [line.strip() for line in lines if line.strip().strip("+-|=_ ")]
    found = errors[-1] if errors else plain[-1] if plain else report.outcome
    return found[:300]


def ended_early(failed: dict[str, str], frame: Any) -> list[str]:
    """The groups whose test failed without a failing row of their own to say why (a
    Hypothesis error, a fixture's, a lost example): 'group: the test's last words'."""
    failing = frame[frame["verdict"].isin(FAILING)] if not frame.empty else frame
    rows = failing[GROUP].astype(str).to_dict("records") if not failing.empty else []
    lines = []
    for group, reason in sorted(failed.items()):
        ops, implementation, dtype, direction = ([*group.split("|"), "", "", "", ""])[:4]
        explained = any(
            row["op"] in ops.split(",")
            and implementation in ("", row["implementation"])
            and dtype in ("", row["dtype"])
            and direction in ("", row["direction"])
            for row in rows
        )
        if not explained:
            title = " ".join(part for part in (ops, implementation, dtype, direction) if part)
            lines.append(f"{title}: {reason}")
    return lines
