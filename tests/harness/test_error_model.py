"""The error model: the bound's arithmetic, and verdicts that turn on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.error_model import (
    UNIT_ROUNDOFF,
    error_bound,
    gamma,
    measure_sum_of_products,
)


def test_gamma_matches_its_definition() -> None:
    u = UNIT_ROUNDOFF["float32"]
    assert gamma(10, u) == pytest.approx(10 * u / (1 - 10 * u), rel=1e-15)
    assert math.isinf(gamma(2**24, u))


def test_exact_result_passes_with_zero_error() -> None:
    oracle = np.array([1.0, -2.0, 0.0])
    m = measure_sum_of_products(oracle.copy(), oracle, np.abs(oracle), 3, "float64", "float64")
    assert m.passed and m.max_abs_error == 0 and m.normalized_error == 0


@pytest.mark.parametrize(("scale", "passes"), [(0.99, True), (1.01, False)])
def test_verdict_turns_at_the_bound(scale: float, passes: bool) -> None:
    oracle = np.array([3.0, -1.0], dtype=np.float64)
    magnitude = np.array([5.0, 4.0])
    n = 7
    bound = error_bound(oracle, magnitude, n, "float32", "float32")
    expected_first = (1 + 2**-24) * (gamma(n, 2**-24) + gamma(n, 2**-53)) * 5.0 * (
        1 + gamma(n, 2**-53)
    ) + 2**-24 * 3.0
    assert bound[0] == pytest.approx(expected_first, rel=1e-12)
    got = (oracle + scale * bound).astype(np.float32)
    # float32 rounding of got moves it a little; measure what was actually produced
    ratio = np.abs(got.astype(np.float64) - oracle) / bound
    m = measure_sum_of_products(got, oracle, magnitude, n, "float32", "float32")
    assert m.passed == bool(ratio.max() <= 1.0)
    assert m.bound_ratio == pytest.approx(ratio.max())
    if not passes:
        assert not m.passed and "exceeds the bound" in m.problem


def test_zero_magnitude_demands_exact_zero() -> None:
    oracle = np.zeros(2)
    m = measure_sum_of_products(np.array([0.0, 1e-300]), oracle, oracle, 4, "float64", "float64")
    assert not m.passed and math.isinf(m.normalized_error)


@pytest.mark.parametrize(
    ("oracle", "got", "problem"),
    [
        ([1.0, 1.0], [np.nan, 1.0], "NaN mismatch"),  # NaN where the oracle is finite
        ([1.0, np.nan], [1.0, np.inf], "NaN mismatch"),  # a NaN lost
        ([-np.inf, 1.0], [np.inf, 1.0], "infinity mismatch"),  # wrong sign of infinity
        ([5.0, 1.0], [np.inf, 1.0], "infinity mismatch"),  # overflow the oracle has not
    ],
)
def test_special_values_must_match(oracle: list, got: list, problem: str) -> None:
    expected = np.array(oracle)
    m = measure_sum_of_products(np.array(got), expected, np.abs(expected), 2, "float64", "float64")
    assert not m.passed and problem in m.problem


def test_matching_special_values_pass() -> None:
    oracle = np.array([np.inf, np.nan, 2.0])
    m = measure_sum_of_products(oracle.copy(), oracle, np.abs(oracle), 2, "float64", "float64")
    assert m.passed


def test_shape_and_dtype_are_checked() -> None:
    oracle = np.ones(3)
    assert (
        "shape"
        in measure_sum_of_products(np.ones(2), oracle, oracle, 1, "float64", "float64").problem
    )
    assert (
        "dtype"
        in measure_sum_of_products(
            np.ones(3, np.float32), oracle, oracle, 1, "float64", "float64"
        ).problem
    )


def test_backward_bounds_count_terms_over_the_forward_output() -> None:
    """grad_bias of a transposed conv sums over the forward *output* (here 5 * 1 * 2 = 10
    positions per channel), not over the input: the bound once took the first gradient's
    (the input's) shape and was too tight for transposed convolutions."""
    from conformance.catalogue import BY_NAME
    from conformance.check import sum_of_products_tolerances
    from conformance.example import Example
    from conformance.spec import ToleranceContext

    spec = BY_NAME["conv_transpose3d"]
    rng = np.random.default_rng(0)
    arrays = {
        "input": rng.standard_normal((2, 2, 1, 1)),  # unbatched (C, D, H, W)
        "weight": rng.standard_normal((2, 2, 3, 1, 2)),
        "bias": rng.standard_normal(4),
    }
    config = {
        "stride": (1, 2, 1),
        "padding": (1, 0, 0),
        "output_padding": (1, 0, 0),
        "groups": 2,
        "dilation": (2, 1, 1),
    }
    out = spec.reference(*arrays.values(), **config)
    assert out.shape == (4, 5, 1, 2)
    grad = rng.standard_normal(out.shape)
    expected = dict(
        zip(
            spec.gradient_names,
            spec.reference_backward(grad, *arrays.values(), **config),
            strict=True,
        )
    )
    context = ToleranceContext(
        spec.name,
        Example(arrays, config, "normal", 0),
        "backward",
        arrays,
        grad,
        expected,
        "float32",
        "float32",
        out.shape,
    )
    tolerances = sum_of_products_tolerances(spec, context)
    assert tolerances["grad_bias"].n_terms == 10
    assert tolerances["grad_weight"].n_terms == 2  # batch 1 x input positions 2 * 1 * 1
