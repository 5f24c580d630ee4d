"""lp pooling's bound against lp pooling computed step by step in float16 (the fixture
tests/harness/float16_lp_steps.py): every intermediate rounded, underflowing and overflowing
in float16, as torch's autograd graph stores them. Such arithmetic is what the bound of the
tested dtype describes, so no example of it may be judged a failure."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example
from conformance.catalogue.spec import ToleranceContext
from conformance.implementations.user_module import ModuleImplementation
from conformance.judge.check import run_example

FIXTURE = "tests.harness.float16_lp_steps"
STEPS = ModuleImplementation(FIXTURE, importlib.import_module(FIXTURE))


def test_underflowing_power_is_judged_within_the_bound() -> None:
    """x = 1.4e-4 at p = 3: x**2 = 2e-8 is below half float16's least subnormal, so the stored
    x**(p - 1) is 0 and so is the gradient, where the exact one is about 4.9e-5 (g = 1). The
    bound once allowed 5e-7 there: a failure."""
    x = np.array([[1.4e-4, 0.02]])  # (C, L): one window of two
    config = {"norm_type": 3.0, "kernel_size": 2, "stride": None, "ceil_mode": False}
    spec = BY_NAME["lp_pool1d"]
    example = Example({"input": x}, config, "normal", 0)
    grad = np.ones((1, 1), dtype=np.float16)
    got = STEPS.lp_pool1d_backward(grad, x.astype(np.float16), **config)[0]
    x16 = x.astype(np.float16).astype(np.float64)
    exact = x16**2 * (x16**3).sum() ** (1 / 3 - 1)
    assert got[0, 0] == 0 and exact[0, 0] > 4e-5  # the underflow the bound must carry
    outcome = run_example(spec, STEPS, "float16", "backward", example)
    assert outcome.row["verdict"] == "pass", outcome.row["problem"]
    # within a finite bound that covers the lost value (not a bound that gives up)
    context = ToleranceContext(
        spec.name, example, "backward", {"input": x16}, grad.astype(np.float64),
        {"grad_input": exact}, "float16", "float16", (1, 1),
    )  # fmt: skip
    assert spec.tolerances is not None
    bound = spec.tolerances(context)["grad_input"].bound
    assert np.isfinite(bound).all() and bound[0, 0] >= exact[0, 0]


@pytest.mark.parametrize("op", ["lp_pool1d", "lp_pool2d"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_float16_arithmetic_is_never_a_failure(op: str, direction: str) -> None:
    spec = BY_NAME[op]
    verdicts: list[str] = []

    @settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
    @given(example=spec.examples())
    def judged(example: Example) -> None:
        outcome = run_example(spec, STEPS, "float16", direction, example)
        verdicts.append(outcome.row["verdict"])
        assert outcome.row["verdict"] != "fail", outcome.report

    judged()
    assert verdicts.count("pass") >= 100  # judged, not skipped
