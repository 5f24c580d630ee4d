"""The reference's forward-mode and second derivatives against central differences (float64).

Every differentiable catalogue op: ``<op>_jvp`` against (f(a + h t) - f(a - h t)) / (2 h), and
``<op>_double_backward`` against central differences of sum_i <v_i, <op>_backward(g, a)_i>
in every differentiable argument and in g, on examples its own strategy draws (kept small:
the second check costs two backward calls per element).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import reference
from conformance.catalogue import CATALOGUE
from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec
from reference import double_backward as second_order
from reference.gradcheck import check_double_backward, check_jvp
from tests.reference.kinks import away_from_kinks

# the ops judged in jvp and double backward (conv_max_pool and conv_transpose_conv are
# differentiable but judged forward and backward only: entries.WITHOUT_DERIVATIVE_DIRECTIONS)
DIFFERENTIABLE = [spec for spec in CATALOGUE if spec.reference_jvp is not None]


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
    away_from_kinks(spec.name, args, config)
    differentiable = _indices(spec)
    tangents = [
        None if args[i] is None else rng.standard_normal(args[i].shape) for i in differentiable
    ]
    comparison = check_jvp(
        spec.reference,
        spec.reference_jvp,
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
    away_from_kinks(spec.name, args, config)
    grad_output = rng.standard_normal(out.shape)
    grad_grads = [
        None if args[i] is None else rng.standard_normal(args[i].shape) for i in differentiable
    ]
    comparisons = check_double_backward(
        spec.reference_backward,
        spec.reference_double_backward,
        args,
        grad_output,
        grad_grads,
        differentiable,
        kwargs=config,
    )
    assert comparisons and all(c.ok for c in comparisons), [
        (c.argument, c.max_abs_error) for c in comparisons if not c.ok
    ]


# --- lp pooling's second derivative where x ** p or its window sum is at an edge ------------


def _lp_loss(x: np.ndarray, g: np.ndarray, v: np.ndarray, p: float, **config) -> float:
    """L = <v, lp_pool1d_backward(g, x)>: the scalar whose gradient the double backward is."""
    (gradient,) = reference.lp_pool1d_backward(g, x, p, **config)
    return float(np.vdot(v, gradient))


def test_lp_double_backward_at_a_zero_element_below_p_2() -> None:
    """p = 1.5 at x = 0 (x ** 1.5 needs x >= 0: one-sided derivatives): x ** (p - 2) is
    infinite, but where v = 0 or the element's slope sum C = sum_w g_w S_w ** (1/p - 1) is 0
    the derivative is 0, which the reference once answered as inf * 0 = NaN. Brute force:
    the right difference quotients of L are O(sqrt(h)) there (each G_i moves by
    |v g (1/p - 1) S ** (1/p - 2)| h ** p <= (4/3) h ** 1.5, three of them), and grow like
    v C h ** -0.5 where v C != 0 (the reference's -inf)."""
    x = np.array([[1.0, 0.0, 1.0, 0.0, 2.0, 0.0]])
    g = np.array([[1.0, -1.0, 0.5, 2.0, 1.0]])  # equal sums either side of x[1]: C = 1 - 1 = 0
    v = np.array([[0.5, 2.0, -1.0, 0.0, 0.25, -0.5]])  # v = 0 at x[3]; v C < 0 at x[5]
    config = {"kernel_size": 2, "stride": 1}
    grad_input, _ = second_order.lp_pool1d_double_backward(g, (v,), x, 1.5, **config)
    assert grad_input[0, 1] == 0.0 and grad_input[0, 3] == 0.0
    assert grad_input[0, 5] == -np.inf

    def right_quotient(j: int, h: float) -> float:
        shifted = x.copy()
        shifted[0, j] += h
        return (_lp_loss(shifted, g, v, 1.5, **config) - _lp_loss(x, g, v, 1.5, **config)) / h

    for h in (1e-4, 1e-6, 1e-8):
        for j in (1, 3):
            assert abs(right_quotient(j, h)) <= 5 * np.sqrt(h), (j, h)
    assert right_quotient(5, 1e-8) < 10 * right_quotient(5, 1e-4) < 0  # ~ h ** -0.5 -> -inf
    # the grad_output part is linear in g: central differences apply there
    comparisons = check_double_backward(
        reference.lp_pool1d_backward,
        second_order.lp_pool1d_double_backward,
        [x, 1.5],
        g,
        [v],
        [0],
        kwargs=config,
    )
    assert comparisons[-1].argument == -1 and comparisons[-1].ok


def test_lp_double_backward_is_nan_where_a_window_sum_is_negative() -> None:
    """p = 3: a window whose x ** 3 sum is negative (exactly, in rationals) has no real root
    (pow's principal value, torch's definition: torch in float64 answers NaN there too), so
    no derivatives: NaN, exactly there. A campaign met torch's bfloat16 answering 0.515625
    where its rounded sum had crossed 0 (exact -0.078, rounded +0.030); the oracle was right.
    The other window, alone, is checked by central differences."""
    x = np.array([[1.0, -1.015625, 0.5, 0.75]])  # bfloat16 values; windows of two
    g, v = np.array([[0.5, -1.25]]), np.array([[1.0, 0.5, -0.75, 2.0]])
    sums = [sum(Fraction(float(t)) ** 3 for t in x[0, k : k + 2]) for k in (0, 2)]
    assert sums[0] < 0 < sums[1]
    grad_input, grad_grad_output = second_order.lp_pool1d_double_backward(g, (v,), x, 3.0, 2)
    assert np.array_equal(np.isnan(grad_input), [[True, True, False, False]])
    assert np.array_equal(np.isnan(grad_grad_output), [[True, False]])
    alone = [x[:, 2:], 3.0, 2]
    comparisons = check_double_backward(
        reference.lp_pool1d_backward,
        second_order.lp_pool1d_double_backward,
        alone,
        g[:, 1:],
        [v[:, 2:]],
        [0],
    )
    assert all(c.ok for c in comparisons)
    window_alone = second_order.lp_pool1d_double_backward(g[:, 1:], (v[:, 2:],), *alone)
    assert np.allclose(grad_input[:, 2:], window_alone[0], rtol=1e-15, atol=0)
    assert np.allclose(grad_grad_output[:, 1:], window_alone[1], rtol=1e-15, atol=0)


# --- the bilinear ops' planned derivatives: one pass a part, the unplanned formulas' bits ----

PLANNED = [
    spec
    for spec in DIFFERENTIABLE
    if spec.name.startswith(("conv1d", "conv2d", "conv3d", "conv_transpose"))
]


@pytest.mark.parametrize("spec", PLANNED, ids=[s.name for s in PLANNED])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_planned_bilinear_derivatives_are_the_unplanned_formulas(spec: OpSpec, data) -> None:
    """conv's and conv_transpose's jvp and double backward (each adjoint alone, no primal
    forward) give the formulas' own bits, where each part is a call of the op or its backward
    (second_order.make_bilinear without a plan): unbatched input, absent bias, grad_grads
    left out, and inf/NaN (IEEE's) included."""
    example = data.draw(spec.examples())
    rng = np.random.default_rng(example.seed)
    args = [None if a is None else rng.standard_normal(a.shape) for a in example.arrays.values()]
    if data.draw(st.booleans(), label="a non-finite element"):
        args[0].flat[0] = data.draw(st.sampled_from([np.inf, -np.inf, np.nan]))
    config = dict(example.config)
    out = spec.reference(*args, **config)
    grad_output = rng.standard_normal(out.shape)
    grad_grads = [
        None
        if a is None or data.draw(st.booleans(), label=f"leave out grad_grads {i}")
        else rng.standard_normal(a.shape)
        for i, a in enumerate(args)
    ]
    backward = spec.reference_backward
    unplanned = second_order.make_bilinear(spec.reference, backward)
    unplanned_jvp = reference.jvp.make_bilinear_jvp(spec.reference)
    got = spec.reference_double_backward(grad_output, grad_grads, *args, **config)
    want = unplanned(grad_output, grad_grads, *args, **config)
    for mine, theirs in zip(got, want, strict=True):
        if theirs is None:
            assert mine is None
            continue
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(np.signbit(mine), np.signbit(theirs))
    tangents = [None if a is None else rng.standard_normal(a.shape) for a in args]
    np.testing.assert_array_equal(
        spec.reference_jvp(tangents, *args, **config),
        unplanned_jvp(tangents, *args, **config),
    )


def test_planned_derivatives_name_a_tangent_of_another_dtype() -> None:
    x, w = np.ones((1, 2, 5)), np.ones((3, 2, 2))
    with pytest.raises(TypeError, match="tangents entry for weight must have the primals' dtype"):
        reference.conv1d_jvp([None, w.astype(np.float32), None], x, w)
    with pytest.raises(TypeError, match="grad_grads entry for input must have the primals'"):
        reference.conv_transpose1d_double_backward(
            np.ones((1, 2, 3)), [x[:, :, :2].astype(np.float32), None, None], x[:, :, :2], w[:2]
        )


def test_a_planned_transposed_convolution_names_what_does_not_fit_its_plan() -> None:
    from reference.conv_transpose import TransposedConvolution

    with pytest.raises(ValueError, match="expects 3"):  # conv_transpose's own checks
        TransposedConvolution.checked(1, np.ones((1, 2, 4)), np.ones((3, 2, 2)))
    planned = TransposedConvolution.checked(1, np.ones((2, 4)), np.ones((2, 3, 2)), stride=2)
    assert planned.output_shape == (3, 8)  # unbatched: (C_out, (4 - 1) * 2 + 2)
    with pytest.raises(ValueError, match=r"input must be an array of shape \(2, 4\)"):
        planned.forward(np.ones((1, 2, 4)), np.ones((2, 3, 2)))
    with pytest.raises(ValueError, match=r"weight must be .* dtype float64"):
        planned.grad_input(np.ones((3, 8)), np.ones((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \(3, 8\)"):
        planned.grad_weight(np.ones((3, 7)), np.ones((2, 4)))
