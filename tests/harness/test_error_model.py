"""The error model: the bound's arithmetic, and verdicts that turn on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.judge.error_model import (
    UNIT_ROUNDOFF,
    Tolerance,
    accumulated,
    error_bound,
    gamma,
    magnitude_cover,
    measure,
    measure_sum_of_products,
    past_the_range,
    stored,
    sum_of_products,
    unknown_as_infinite,
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
    from conformance.catalogue.example import Example
    from conformance.catalogue.spec import ToleranceContext
    from conformance.judge.default_bounds import sum_of_products_tolerances

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


def test_a_stored_intermediate_rounds_and_underflows() -> None:
    """fl(v) = v (1 + delta) + eta on the stored operand |v| + error (Higham eq. 2.8)."""
    error = stored(np.array([1.0, 0.0, -3.0]), np.array([0.0, 0.0, 0.5]), "float16")
    eta = 2.0**-25  # half float16's least subnormal, 2**-24
    assert error[0] == 2.0**-11 + eta  # one rounding of 1
    assert error[1] == eta  # 0 may hold an underflowed value
    assert error[2] == 0.5 + 2.0**-11 * 3.5 + eta


def test_a_stored_intermediate_that_may_overflow_is_unbounded() -> None:
    """Past float16's 65504 the stored value may be inf, and whatever follows inf or NaN."""
    error = stored(np.array([65000.0, 65000.0, 1e6]), np.array([0.0, 600.0, 0.0]), "float16")
    assert np.isfinite(error[0]) and np.isinf(error[1]) and np.isinf(error[2])
    assert np.isfinite(stored(np.array([1e6]), np.array([0.0]), "bfloat16")).all()


def test_a_sum_underflows_by_eta_per_term_and_may_overflow() -> None:
    magnitude = np.array([2.0, 65000.0, 64000.0])
    error = accumulated(magnitude, 3, 0.01, "float16")
    assert error[0] == 0.01 * 2.0 + 4 * 2.0**-25  # spread M + (n + 1) eta
    assert np.isinf(error[1])  # 65000 + 650 reaches float16's 65504: no claim
    assert error[2] == pytest.approx(640.0)  # 64000 + 640 does not
    tf32 = accumulated(np.array([65000.0]), 3, 0.01, "tf32")  # float32's range
    assert tf32[0] == pytest.approx(650.0)


def test_an_unknown_error_stays_unknown() -> None:
    with np.errstate(invalid="ignore"):
        carried = np.array([np.inf, 0.0]) * np.array([0.0, 1.0])  # inf * 0: NaN
    assert unknown_as_infinite(carried).tolist() == [np.inf, 0.0]


def test_a_bound_past_the_range_accepts_either_infinity() -> None:
    """A bound wider than largest + |oracle| lets the value overflow with the other sign too:
    float16 batch norm's exact grad_input 38.2 came out -inf (within a bound of 1.2e5)."""
    oracle = np.array([38.2, 38.2])
    bound = past_the_range(np.array([1.2e5, 1e3]), oracle, "float16")
    assert np.isinf(bound[0]) and bound[1] == 1e3
    got = np.array([-np.inf, 38.0], dtype=np.float16)
    tolerance = Tolerance(bound, bound, 1)
    assert measure(got, oracle, tolerance, "float16").passed
    narrow = Tolerance(np.array([1.2e5, 1e3]), np.array([1.2e5, 1e3]), 1)
    assert not measure(got, oracle, narrow, "float16").passed  # measure alone: same sign only


def _general_measure(got: np.ndarray, oracle: np.ndarray, tolerance: Tolerance) -> tuple:
    """measure's figures by its general path (the fast path declines a tolerance whose bound
    it cannot broadcast without growing, so a (1, n) bound takes the general path)."""
    shaped = Tolerance(tolerance.bound[np.newaxis], tolerance.scale[np.newaxis], tolerance.n_terms)
    m = measure(got[np.newaxis], oracle[np.newaxis], shaped, "float32")
    return m.max_abs_error, m.normalized_error, m.bound_ratio, m.passed


@pytest.mark.parametrize("seed", range(12))
def test_the_finite_fast_path_gives_the_general_paths_figures(seed: int) -> None:
    rng = np.random.default_rng(seed)
    oracle = rng.normal(size=50)
    magnitude = np.abs(oracle) + rng.random(50)
    magnitude[:5] = 0.0  # zero bounds: 0 / 0 where the result is exact, x / 0 where not
    oracle[:5] = 0.0
    got = (oracle + rng.normal(scale=1e-7, size=50)).astype(np.float32)
    got[: 5 if seed % 2 else 3] = 0.0  # odd seeds: exact where the bound is 0
    tolerance = sum_of_products(oracle, magnitude, 9, "float32", "float32")
    fast = measure(got, oracle, tolerance, "float32")
    general = _general_measure(got, oracle, tolerance)
    assert (fast.max_abs_error, fast.normalized_error, fast.bound_ratio, fast.passed) == general


def test_the_bound_is_the_same_with_or_without_a_non_finite_element() -> None:
    oracle, magnitude = np.array([1.5, -2.0, 0.25]), np.array([2.0, 3.0, 0.5])
    finite = sum_of_products(oracle, magnitude, 6, "float16", "float16", "float32")
    with_nan = sum_of_products(
        np.append(oracle, np.nan), np.append(magnitude, np.nan), 6, "float16", "float16",
        "float32",
    )  # fmt: skip
    assert np.array_equal(with_nan.bound[:3], finite.bound)
    assert np.array_equal(with_nan.scale[:3], finite.scale) and with_nan.bound[3] == 0


@pytest.mark.parametrize("n", [1, 7, 300, 5000])
def test_a_float32_magnitude_covers_the_float64_one(n: int) -> None:
    """M <= factor * M_hat + floor for a float32 evaluation on float32 values, whatever the
    order: products rounded and summed one by one (the worst order for rounding), values
    spread over many binades and below the normal range."""
    rng = np.random.default_rng(n)
    for scale in (1.0, 2.0**-70, 2.0**40):  # 2^-70 squared is subnormal in float32
        a = (np.abs(rng.normal(size=n)) * scale * 2.0 ** rng.integers(-8, 8, n)).astype(np.float32)
        b = (np.abs(rng.normal(size=n)) * scale).astype(np.float32)
        exact = math.fsum(float(x) * float(y) for x, y in zip(a, b, strict=True))
        hat = np.float32(0)
        for x, y in zip(a, b, strict=True):
            hat = np.float32(hat + np.float32(x * y))
        factor, floor = magnitude_cover(n, "float32")
        assert exact <= factor * float(hat) + floor
        # and it does not give much away: the cover is 1 + O(n u); the computed M_hat may lie
        # (n + 1) u above M, the factor adds (2n + 2) u, the floor (2n + 2) eta: 8 (n + 1) each
        # leaves twice that room, and a cover of 1 + O(n^2 u) or a wrong floor still fails
        assert (
            factor * float(hat) + floor
            <= exact * (1 + 8 * (n + 1) * 2.0**-24) + 8 * (n + 1) * 2.0**-149
        )


def test_a_magnitude_too_long_for_float32_is_refused() -> None:
    with pytest.raises(ValueError, match="no bound in float32"):
        magnitude_cover(2**23, "float32")


@pytest.mark.parametrize(
    ("op", "dtype", "direction"),
    [
        ("conv2d", "float16", "forward"),
        ("conv2d", "float32", "backward"),
        ("conv_transpose1d", "bfloat16", "backward"),
        ("avg_pool2d", "float16", "forward"),
        ("max_pool3d", "float32", "backward"),
    ],
)
def test_the_float32_magnitude_pass_bounds_at_least_what_the_float64_one_does(
    op: str, dtype: str, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the op's own examples: never tighter than the float64 magnitude's bound (it covers
    its own rounding), and looser by no more than that rounding, a few parts in 10^4."""
    from hypothesis import given, settings

    from conformance.catalogue import BY_NAME
    from conformance.judge import default_bounds
    from conformance.judge.check import bounds, oracle, prepare

    spec = BY_NAME[op]
    monkeypatch.setattr(default_bounds, "SINGLE_FROM_SIZE", 0)  # the float32 pass on any size

    # no deadline: each example runs the oracle and two magnitude passes, on 2 shared cores
    # whose speed varies by tens of percent from one minute to the next
    @settings(max_examples=15, deadline=None)
    @given(spec.examples())
    def check(example: object) -> None:
        prepared = prepare(spec, dtype, direction, example)  # type: ignore[arg-type]
        oracle(prepared)
        single = bounds(prepared, "float32")
        with monkeypatch.context() as patch:
            patch.setattr(default_bounds, "SINGLE_EXACT", ())
            double = bounds(prepared, "float32")
        for name, tolerance in double.items():
            both = np.isfinite(tolerance.bound)
            assert np.all(single[name].bound[both] >= tolerance.bound[both]), name
            # looser only by the float32 pass's own rounding, gamma_(2n+2)(2^-24): under 1e-3
            # for these examples' n (at most a few hundred terms), and 1e-300 for zero bounds
            assert np.all(single[name].bound[both] <= tolerance.bound[both] * 1.001 + 1e-300)

    check()
