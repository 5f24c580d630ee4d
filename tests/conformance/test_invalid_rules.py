"""Every invalid-call rule makes calls torch rejects: a rule that made calls torch accepts
would pass silently against torch and raise a false alarm against a stricter framework. The
only calls torch may accept are the ones the shipped baseline records as torch's own defect
(torch too permissive, decided by a brute-force case): checked here too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.catalogue import CATALOGUE, OpSpec
from conformance.implementations.torch_eager import TorchImplementation
from conformance.judge.invalid import NO_INVALID_CALLS, broken, invalid_calls
from conformance.reporting.baseline import SHIPPED, explain, load_baseline

TORCH = TorchImplementation()
BASELINE = load_baseline(SHIPPED)


SPECS = [spec for spec in CATALOGUE if spec.name not in NO_INVALID_CALLS]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_every_rule_makes_a_call_torch_rejects(spec: OpSpec, data: st.DataObject) -> None:
    example, rule = data.draw(invalid_calls(spec), label="invalid call")
    arrays, config = broken(rule, example, spec)
    try:
        with np.errstate(all="ignore"):
            getattr(TORCH, spec.name)(*arrays.values(), **config)
    except Exception:
        return  # rejected, as the rule says
    row = {
        "op": spec.name,
        "implementation": "torch",
        "dtype": "float64",
        "direction": "invalid call",
        "regions": rule.name,
        "verdict": "fail",
        "error_verdict": "only the reference rejected",
    }
    known = explain(BASELINE, row)
    assert known is not None, (
        f"rule {rule.name!r} made a call torch accepts: {spec.name} "
        f"{ {k: None if a is None else a.shape for k, a in arrays.items()} } {config}"
    )
