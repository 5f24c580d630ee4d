"""The campaign: one test per catalogue op x dtype x direction, against the oracle.

Collected from tests/conformance/test_catalogue.py and run by ``python -m conformance run``.

Every example is recorded (the plugin's recorder) and measured against its error bound; a
failing example fails the test with the minimal example and a standalone repro snippet,
unless the committed baseline (reports/baseline.csv) explains it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from conformance import timing
from conformance.baseline import KnownDiscrepancy, explain
from conformance.catalogue import CATALOGUE, OpSpec
from conformance.check import regions_hit, run_example
from conformance.derivatives import implementation_attribute
from conformance.implementations import implements, supports
from conformance.invalid import check_invalid, invalid_call_dtype, invalid_calls, judge
from conformance.profiles import per_case
from conformance.recorder import Recorder
from conformance.strategies.knobs import batches

CASES = [
    pytest.param(spec, dtype, direction, id=f"{spec.name}-{dtype}-{direction}")
    for spec in CATALOGUE
    for dtype in spec.dtypes
    for direction in spec.directions
]


_STRATEGIES: dict[tuple[str, str], st.SearchStrategy[Any]] = {}


def _batch(spec: OpSpec, kind: str = "examples") -> st.SearchStrategy[tuple[Any, ...]]:
    """A test case's examples of the op (or invalid calls), built once per process: a new
    strategy object per draw is validated by Hypothesis anew, which costs more than drawing
    from it."""
    if (spec.name, kind) not in _STRATEGIES:
        one = spec.examples() if kind == "examples" else invalid_calls(spec)
        _STRATEGIES[spec.name, kind] = batches(one, _PER_CASE)
    return _STRATEGIES[spec.name, kind]


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
        examples = data.draw(_batch(spec), label="examples")
    worst = 0.0
    for example in examples:  # the first failure the baseline does not explain ends the case
        began = time.perf_counter()
        regions = regions_hit(spec, example, dtype)
        where = {
            "op": spec.name,
            "implementation": implementation.name,
            "dtype": dtype,
            "direction": direction,
            "regions": ";".join(regions),
        }
        crashes = explain(conformance_baseline, where, action="skip")
        outcome = run_example(
            spec, implementation, dtype, direction, example, call=crashes is None, regions=regions
        )
        outcome.row["seconds"] = time.perf_counter() - began
        timing.add("check", outcome.row["seconds"])
        with timing.phase("record"):
            known = crashes or (
                None if outcome.passed else explain(conformance_baseline, outcome.row)
            )
            if known is not None:  # a disagreement the baseline explains, with its reason
                outcome.row.update(verdict="known", known_reason=known.reason)
            conformance_recorder.record(outcome.row)
            if conformance_target:
                worst = max(worst, min(float(outcome.row["bound_ratio"]), 1e6))
        assert outcome.passed or known is not None, outcome.report
    if conformance_target:
        target(worst, label="bound ratio")


@pytest.mark.parametrize("spec", CATALOGUE, ids=[f"{spec.name}-invalid" for spec in CATALOGUE])
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
    for example, rule in calls:
        with timing.phase("check"):
            row = check_invalid(spec, implementation, example, rule, dtype)
        row["regions"] = rule.name  # a baseline entry names the rule as its region
        verdict, problem = judge(row)
        if (
            verdict == "fail"
            and row["error_verdict"] == "only the reference rejected"
            and not getattr(implementation, "validates_like_torch", True)
        ):
            # a framework with argument rules of its own (ONNX, JAX) accepting a call torch's
            # rules forbid: what it then computes is outside torch's semantics, not judged
            verdict = "unsupported"
            problem = f"{implementation.name} does not check torch's rule ({rule.name}): {problem}"
        with timing.phase("record"):
            known = explain(conformance_baseline, row) if verdict == "fail" else None
            row.update(verdict="known" if known else verdict, problem=problem)
            if known is not None:
                row["known_reason"] = known.reason
            conformance_recorder.record(row)
        assert verdict in ("pass", "unsupported") or known is not None, (
            f"{spec.name}, {rule.name}: {problem}\nconfig {row['config']}, shapes {row['shapes']}"
        )
