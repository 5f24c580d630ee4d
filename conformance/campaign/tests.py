"""The campaign: one test per catalogue op x dtype x direction, against the oracle.

Collected from tests/conformance/test_catalogue.py and run by ``python -m conformance run``.

Every example is recorded (the plugin's recorder) and measured against its error bound; a
failing example fails the test with the minimal example and a standalone repro snippet,
unless the committed baseline (reports/baseline.csv) explains it.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from conformance.campaign import timing
from conformance.campaign.judging import INVALID_TARGET, TARGET, Judged, mark_known, settle
from conformance.campaign.profiles import per_case
from conformance.campaign.recorder import Recorder
from conformance.catalogue import CATALOGUE, OpSpec
from conformance.catalogue.strategies.knobs import batches
from conformance.implementations import implements, supports
from conformance.implementations.base import values_per_configuration
from conformance.implementations.calls import HISTORY, ProcessDied
from conformance.implementations.code_paths import platform_facts
from conformance.judge.check import call_of, died_outcome, regions_hit
from conformance.judge.derivatives import implementation_attribute
from conformance.judge.invalid import (
    NO_INVALID_CALLS,
    died_on_invalid_call,
    invalid_call_dtype,
    invalid_calls,
)
from conformance.reporting.baseline import (
    KnownDiscrepancy,
    explain,
    isolating,
    isolating_in_group,
    on_platform,
)
from conformance.reporting.results import FAILING

CASES = [
    pytest.param(spec, dtype, direction, id=f"{spec.name}-{dtype}-{direction}")
    for spec in CATALOGUE
    for dtype in spec.dtypes
    for direction in spec.directions
]


_STRATEGIES: dict[tuple[str, str, int], st.SearchStrategy[Any]] = {}


def _batch(
    spec: OpSpec, kind: str = "examples", variants: int = 1
) -> st.SearchStrategy[tuple[Any, ...]]:
    """A test case's examples of the op (or invalid calls), built once per process: a new
    strategy object per draw is validated by Hypothesis anew, which costs more than drawing
    from it. ``variants``: examples per configuration (values_per_configuration)."""
    if (spec.name, kind, variants) not in _STRATEGIES:
        one = spec.examples() if kind == "examples" else invalid_calls(spec)
        _STRATEGIES[spec.name, kind, variants] = batches(one, _PER_CASE, variants)
    return _STRATEGIES[spec.name, kind, variants]


# the loaded profile's examples per group, in test cases of _PER_CASE examples (read when the
# module is collected, after pytest's --hypothesis-profile took effect)
_EXAMPLES = settings().max_examples
_PER_CASE = per_case(_EXAMPLES)
_PER_GROUP = settings(max_examples=_EXAMPLES // _PER_CASE)


@pytest.mark.parametrize(("spec", "dtype", "direction"), CASES)
@_PER_GROUP
@given(data=st.data())
def test_op(
    spec: OpSpec,
    dtype: str,
    direction: str,
    data: st.DataObject,
    implementation: Any,
    conformance_recorder: Recorder,
    conformance_target: bool,
    conformance_baseline: list[KnownDiscrepancy],
) -> None:
    op = implementation_attribute(spec.name, direction)
    if not implements(implementation, op):
        pytest.skip(f"the implementation under test has no {op}")
    if not supports(implementation, op, dtype):
        pytest.skip(f"the implementation under test does not run {op} in {dtype}")
    with timing.phase("generate"):
        variants = values_per_configuration(implementation)
        examples = data.draw(_batch(spec, "examples", variants), label="examples")
    baseline = applicable(conformance_baseline, implementation)
    shrinking = Shrinking.of(conformance_recorder, spec.name, implementation.name, dtype, direction)
    pending: list[Any] = []
    replayed = None
    for example in examples:  # the first failure the baseline does not explain ends the case
        key = example.key()
        replayed = shrinking.failed.get(key)
        if replayed is not None:  # a replay of a failure: the same verdict, not a new call
            break
        if key not in shrinking.passed:  # judged already while shrinking: not again
            pending.append(example)
    if shrinking.spent():
        pending = []  # past the shrink budget: nothing new is judged; the failure stands
    worst = 0.0
    for judged in judge_in_batches(spec, implementation, dtype, direction, pending, baseline):
        shrinking.count(judged.row["example_key"])
        with timing.phase("record"):
            conformance_recorder.record(judged.row)
            if conformance_target:
                worst = max(worst, min(float(judged.row["bound_ratio"]), 1e6))
        if not (judged.passed or judged.known):
            implementation.restart()  # what the failure left behind reaches no later call
            for quarantine in (False, True):
                _sent(implementation, quarantine).clear()
            shrinking.fail(judged.row["example_key"], judged)
            disagree(judged.report)
    if replayed is not None:
        conformance_recorder.record(replayed.row)
        disagree(replayed.report)
    if conformance_target:
        target(worst, label="bound ratio")


def judge_in_batches(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    examples: list[Any],
    baseline: list[KnownDiscrepancy],
) -> Iterator[Judged]:
    """The examples judged where the implementation runs, as few messages as there are runs
    of examples bound for the same process (the baseline's isolate entries send theirs to the
    quarantine); a helper that dies is the verdict of the example it was judging, and the
    rest go on in a new one."""
    plan = []
    group = {"op": spec.name, "implementation": implementation.name, "dtype": dtype,
             "direction": direction}  # fmt: skip
    isolates = isolating_in_group(baseline, group)  # most groups: none
    with timing.phase("regions"):
        for example in examples:
            regions = regions_hit(spec, example, dtype)
            where = {**group, "regions": ";".join(regions)}
            plan.append((example, regions, isolating(isolates, where) is not None))
    shared = {"baseline": baseline}  # sent once to each helper (stream compares identity)
    while plan:
        quarantine = plan[0][2]
        length = next((i for i, item in enumerate(plan) if item[2] != quarantine), len(plan))
        run = [(example, regions) for example, regions, _ in plan[:length]]
        arguments = (spec.name, dtype, direction, run, quarantine)
        earlier = _sent(implementation, quarantine)
        done = 0
        began = time.perf_counter()
        # the caller's time at each yield (recording the row) is not the check's
        with timing.phase("check") as away:
            try:
                for judged in implementation.stream(TARGET, arguments, shared, quarantine):
                    earlier.append((spec, dtype, direction, run[done][0]))
                    done += 1
                    with away:
                        yield judged
            except ProcessDied as died:
                # the example it was judging; past the last (it died tidying up after the
                # batch, a heap damaged before), the last: its history holds the calls that
                # did it
                done = min(done, len(run) - 1)
                if earlier and earlier[-1][3] is run[done][0]:
                    earlier.pop()
                example, regions = run[done]
                history = [call_of(*sent) for sent in earlier]
                earlier.clear()  # that process is gone
                outcome = died_outcome(
                    spec, implementation, dtype, direction, example, regions, died, history,
                    quarantine,
                )  # fmt: skip
                judged = settle(outcome, baseline, time.perf_counter() - began)
                done += 1
                with away:
                    yield judged
        plan = plan[done:]


_SENT: dict[tuple[int, bool], collections.deque[tuple[Any, ...]]] = {}


def _sent(implementation: Any, quarantine: bool) -> collections.deque[tuple[Any, ...]]:
    """The last examples judged in the implementation's current helper (or quarantine): the
    history of a crash, whose helper took its own record with it. A restart forgets them."""
    return _SENT.setdefault((id(implementation), quarantine), collections.deque(maxlen=HISTORY))


def disagree(report: str) -> None:
    """Fail the test case. One place raises for every failure of a group: Hypothesis tells
    failures apart by where they were raised, and a replayed failure is the same one."""
    raise AssertionError(report)


class Shrinking:
    """A failing group's shrink budget: after its first failure, at most SHRINK_EXAMPLES more
    distinct examples and SHRINK_SECONDS seconds are judged (a hang costs its time limit, a
    compiling framework seconds per new configuration); past it nothing new is, and the smallest
    failure found so far stands. A failing example Hypothesis replays is answered from
    memory (the same row, no new call): the verdict of a crash, a hang or a history-dependent
    answer cannot turn flaky on its replay."""

    groups: ClassVar[dict[tuple[Any, ...], Shrinking]] = {}

    def __init__(self) -> None:
        self.failed: dict[str, Judged] = {}
        self.passed: set[str] = set()
        self.first: float | None = None
        self.judged = 0
        self.stopped = False

    @classmethod
    def of(cls, *group: Any) -> Shrinking:
        """The state of one group of one run (``group`` starts with the run's recorder)."""
        return cls.groups.setdefault(
            tuple(id(g) if isinstance(g, Recorder) else g for g in group), cls()
        )

    def count(self, key: str) -> None:
        """One more distinct example judged (while shrinking, it is remembered: Hypothesis
        meets the same example again and again, and it is not judged twice)."""
        if self.first is not None:
            self.judged += 1
            self.passed.add(key)

    def spent(self) -> bool:
        if self.first is None or self.stopped:
            return self.stopped
        examples, seconds = shrink_budget()
        self.stopped = self.judged >= examples or time.monotonic() - self.first >= seconds
        if self.stopped:
            for outcome in self.failed.values():
                outcome.row["shrinking"] = (
                    f"stopped at its budget ({self.judged} examples, "
                    f"{time.monotonic() - self.first:.0f} s after the first failure)"
                )
        return self.stopped

    def fail(self, key: str, outcome: Judged) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.failed[key] = outcome


def shrink_budget() -> tuple[int, float]:
    """(examples, seconds) a failing group may judge after its first failure:
    CONFORMANCE_SHRINK_EXAMPLES (default: --max-examples where given, else 300) and
    CONFORMANCE_SHRINK_SECONDS (default 120)."""
    capped = os.environ.get("CONFORMANCE_MAX_EXAMPLES")
    examples = os.environ.get("CONFORMANCE_SHRINK_EXAMPLES") or capped or "300"
    return int(examples), float(os.environ.get("CONFORMANCE_SHRINK_SECONDS") or 120.0)


_APPLICABLE: dict[tuple[int, int], list[KnownDiscrepancy]] = {}


def applicable(baseline: list[KnownDiscrepancy], implementation: Any) -> list[KnownDiscrepancy]:
    """The baseline entries whose platform condition holds on the implementation's code path
    (its facts asked once per implementation: its helper process states them). The same list
    each time: the helper keeps it and is sent it again only when it changes."""
    key = (id(implementation), id(baseline))
    if key not in _APPLICABLE:
        declared = getattr(implementation, "platform", None)
        facts = declared() if callable(declared) else platform_facts(implementation)
        _APPLICABLE[key] = on_platform(baseline, facts)
    return _APPLICABLE[key]


_INVALID = [spec for spec in CATALOGUE if spec.name not in NO_INVALID_CALLS]


@pytest.mark.parametrize("spec", _INVALID, ids=[f"{spec.name}-invalid" for spec in _INVALID])
@_PER_GROUP
@given(data=st.data())
def test_invalid_call(
    spec: OpSpec,
    data: st.DataObject,
    implementation: Any,
    conformance_recorder: Recorder,
    conformance_baseline: list[KnownDiscrepancy],
    conformance_dtypes: tuple[str, ...],
) -> None:
    """A call broken by one rule: the implementation and the reference must both reject it,
    the reference with a ValueError or TypeError naming the argument."""
    if not implements(implementation, spec.name):
        pytest.skip(f"the implementation under test has no {spec.name}")
    dtype = invalid_call_dtype(spec, implementation, conformance_dtypes)
    if dtype is None:
        pytest.skip(f"the implementation under test runs {spec.name} in none of its dtypes")
    with timing.phase("generate"):
        calls = data.draw(_batch(spec, "invalid calls"), label="invalid calls")
    baseline = applicable(conformance_baseline, implementation)
    for row in invalid_rows(spec, implementation, dtype, list(calls)):
        with timing.phase("record"):
            known = explain(baseline, row) if row["verdict"] in FAILING else None
            if known is not None:
                mark_known(row, known)
            conformance_recorder.record(row)
        assert row["verdict"] in ("pass", "unsupported", "known"), (
            f"{spec.name}, {row['rule']}: {row['problem']}\nconfig {row['config']}, "
            f"shapes {row['shapes']}"
        )


def invalid_rows(
    spec: OpSpec, implementation: Any, dtype: str, calls: list[Any]
) -> Iterator[dict[str, Any]]:
    """Each invalid call's row, made where the implementation runs (one message for the
    batch); a call that kills the helper is a crash (or a hang), and the rest go on."""
    while calls:
        items = [(example, rule.name) for example, rule in calls]
        done = 0
        # the caller's time at each yield (recording the row) is not the check's
        with timing.phase("check") as away:
            try:
                for row in implementation.stream(INVALID_TARGET, (spec.name, dtype, items)):
                    done += 1
                    with away:
                        yield row
            except ProcessDied as died:
                example, rule = calls[done]
                row = died_on_invalid_call(spec, implementation, example, rule, dtype, died)
                row["regions"] = rule.name
                done += 1
                with away:
                    yield row
        calls = calls[done:]
