"""Generated from the catalogue: each op x dtype x direction against the oracle.

Every example is recorded (the plugin's recorder) and measured against its error bound; a
failing example fails the test with the minimal example and a standalone repro snippet.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from conformance.catalogue import CATALOGUE, DIRECTIONS, OpSpec
from conformance.check import run_example
from conformance.implementations import implements
from conformance.recorder import Recorder

CASES = [
    pytest.param(spec, dtype, direction, id=f"{spec.name}-{dtype}-{direction}")
    for spec in CATALOGUE
    for dtype in spec.dtypes
    for direction in DIRECTIONS
]


@pytest.mark.parametrize(("spec", "dtype", "direction"), CASES)
@given(data=st.data())
def test_op(
    spec: OpSpec,
    dtype: str,
    direction: str,
    data: st.DataObject,
    implementation: Any,
    conformance_recorder: Recorder,
    conformance_target: bool,
) -> None:
    op = spec.name if direction == "forward" else f"{spec.name}_backward"
    if not implements(implementation, op):
        pytest.skip(f"the implementation under test has no {op}")
    example = data.draw(spec.examples(), label="example")
    outcome = run_example(spec, implementation, dtype, direction, example)
    conformance_recorder.record(outcome.row)
    if conformance_target:
        target(min(float(outcome.row["bound_ratio"]), 1e6), label="bound ratio")
    assert outcome.passed, outcome.report
