"""The reference's forward-mode and second derivatives against central differences (float64).

Every differentiable catalogue op: ``<op>_jvp`` against (f(a + h t) - f(a - h t)) / (2 h), and
``<op>_double_backward`` against central differences of sum_i <v_i, <op>_backward(g, a)_i>
in every differentiable argument and in g, on examples its own strategy draws (kept small:
the second check costs two backward calls per element).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conformance.catalogue import CATALOGUE
from conformance.example import Example
from conformance.spec import OpSpec
from reference import double_backward as second_order
from reference import jvp as forward_mode
from reference.gradcheck import check_double_backward, check_jvp

DIFFERENTIABLE = [spec for spec in CATALOGUE if spec.differentiable]


def _small(example: Example) -> bool:
    return sum(0 if a is None else a.size for a in example.arrays.values()) <= 150


def _smooth_arrays(spec: OpSpec, example: Example, rng: np.random.Generator) -> list:
    """Order-one values away from the ops' kinks: positive for lp pooling (x ** p with a
    fractional p), distinct (no max-pooling ties), running variances positive."""
    arrays = []
    for name, a in example.arrays.items():
        if a is None:
            arrays.append(None)
        elif name == "running_var":
            arrays.append(rng.uniform(0.5, 2.0, a.shape))
        elif spec.name.startswith("lp_pool"):
            arrays.append(rng.uniform(0.5, 2.0, a.shape))
        else:
            arrays.append(rng.standard_normal(a.shape))
    return arrays


def _finite_output(spec: OpSpec, args: list, config: dict) -> np.ndarray:
    """The forward output; a window with no element (max pooling's -inf) has no derivative
    to estimate, so such draws are discarded."""
    out = spec.reference(*[None if a is None else a.copy() for a in args], **config)
    out = out[0] if isinstance(out, tuple) else out
    assume(bool(np.isfinite(out).all()))
    return out


def _indices(spec: OpSpec) -> list[int]:
    return [spec.array_args.index(name) for name in spec.differentiable]


@pytest.mark.parametrize("spec", DIFFERENTIABLE, ids=[s.name for s in DIFFERENTIABLE])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_jvp_central_differences(spec: OpSpec, data) -> None:
    example = data.draw(spec.examples().filter(_small))
    rng = np.random.default_rng(example.seed)
    args = _smooth_arrays(spec, example, rng)
    config = dict(example.config)
    _finite_output(spec, args, config)
    differentiable = _indices(spec)
    tangents = [
        None if args[i] is None else rng.standard_normal(args[i].shape) for i in differentiable
    ]
    comparison = check_jvp(
        spec.reference,
        getattr(forward_mode, f"{spec.name}_jvp"),
        args,
        tangents,
        differentiable,
        kwargs=config,
    )
    assert comparison.ok, comparison.max_abs_error


@pytest.mark.parametrize("spec", DIFFERENTIABLE, ids=[s.name for s in DIFFERENTIABLE])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_double_backward_central_differences(spec: OpSpec, data) -> None:
    example = data.draw(spec.examples().filter(_small))
    rng = np.random.default_rng(example.seed)
    args = _smooth_arrays(spec, example, rng)
    config = dict(example.config)
    differentiable = _indices(spec)
    out = _finite_output(spec, args, config)
    grad_output = rng.standard_normal(out.shape)
    grad_grads = [
        None if args[i] is None else rng.standard_normal(args[i].shape) for i in differentiable
    ]
    comparisons = check_double_backward(
        spec.reference_backward,
        getattr(second_order, f"{spec.name}_double_backward"),
        args,
        grad_output,
        grad_grads,
        differentiable,
        kwargs=config,
    )
    assert comparisons and all(c.ok for c in comparisons), [
        (c.argument, c.max_abs_error) for c in comparisons if not c.ok
    ]
