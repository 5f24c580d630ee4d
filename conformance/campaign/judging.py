"""A batch of a group's examples judged where the implementation runs.

The campaign sends each Hypothesis test case's examples to the implementation's helper
process in one message (conformance.implementations.isolation: ``stream``); the helper judges
them one after the other (the oracle, the call, the bound, the verdict, the baseline's word)
and streams each row back as it is done, stopping at the first failure the baseline does not
explain, whose repros it writes while the calls before it are still its process's history.
The caller waits once per batch instead of once per call, and when the helper dies, the rows
that came before say which example killed it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example
from conformance.judge import steps
from conformance.judge.check import Outcome, harness_failure, run_example
from conformance.reporting.baseline import KnownDiscrepancy, explain

TARGET = "conformance.campaign.judging:judge_batch"
INVALID_TARGET = "conformance.campaign.judging:invalid_batch"


@dataclass
class Judged:
    """One example's row, whether it passed, and, for a failure the baseline does not
    explain, what failed and its repro (``report``)."""

    row: dict[str, Any]
    passed: bool
    known: bool
    report: str = ""


def mark_known(row: dict[str, Any], known: KnownDiscrepancy) -> None:
    """A disagreement the baseline explains: known, with the entry's reason and the verdict
    it explained."""
    row.update(verdict="known", known_reason=known.reason, explained_verdict=row["verdict"])


def settle(outcome: Outcome, baseline: list[KnownDiscrepancy], seconds: float) -> Judged:
    """An outcome with the baseline's word on it; an unexplained failure gets its repros."""
    outcome.row["seconds"] = seconds
    known = None if outcome.passed else explain(baseline, outcome.row)
    if known is not None:
        mark_known(outcome.row, known)
    report = outcome.report if not outcome.passed and known is None else ""
    return Judged(outcome.row, outcome.passed, known is not None, report)


def judge_batch(
    implementation: Any,
    state: Mapping[str, Any],
    op: str,
    dtype: str,
    direction: str,
    items: list[tuple[Example, list[str]]],
    quarantine: bool = False,
) -> Iterator[Judged]:
    """Each (example, its regions) judged in turn; the first failure the baseline
    (``state['baseline']``) does not explain ends the batch."""
    spec = BY_NAME[op]
    baseline = list(state.get("baseline", ()))
    for example, regions in items:
        began = time.perf_counter()
        try:
            outcome = run_example(
                spec, implementation, dtype, direction, example, regions, quarantine, False
            )
        except Exception as error:  # the harness's own failure: a verdict too
            outcome = harness_failure(spec, implementation, dtype, direction, example, error)
        judged = settle(outcome, baseline, time.perf_counter() - began)
        if steps.ENABLED:
            judged.row["step_seconds"] = steps.taken()
        yield judged
        if not judged.passed and not judged.known:
            return


def invalid_batch(
    implementation: Any,
    state: Mapping[str, Any],
    op: str,
    dtype: str,
    items: list[tuple[Example, str]],
) -> Iterator[dict[str, Any]]:
    """Each (example, the name of the rule that breaks it) tried on both sides; a row each."""
    from conformance.judge.invalid import RULES, invalid_row

    rules = {rule.name: rule for rule in RULES}
    spec = BY_NAME[op]
    for example, rule in items:
        yield invalid_row(spec, implementation, example, rules[rule], dtype)
