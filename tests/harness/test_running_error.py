"""The running error analysis's linear and bilinear maps fold an inexact operand's error into
their magnitude's call (conformance.judge.running_error): held here to the terms they stand
for, each map called once per term, on a convolution and its two adjoints."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import reference
from conformance.judge.running_error import Arithmetic, Tracked
from reference.conv import Convolution

CONV = Convolution((2, 4, 7, 6), (6, 2, 3, 2), stride=(2, 1), padding=1, groups=2)


def _tracked(shape: tuple[int, ...], rng: np.random.Generator, exact: bool) -> Tracked:
    value = rng.standard_normal(shape)
    if exact:
        return Tracked(value, np.zeros(shape))
    error = np.abs(rng.standard_normal(shape)) * 1e-3
    error[rng.random(shape) < 0.3] = 0.0  # exact in places, as a masked gradient is
    return Tracked(value, error)


def _termwise_bilinear(
    A: Arithmetic, f: Callable[..., np.ndarray], a: Tracked, b: Tracked, n: int
) -> np.ndarray:
    """s f(|a|, |b|) + f(e_a, |b| + e_b) + f(|a|, e_b), before the storage's underflow."""
    magnitude_a, magnitude_b = np.abs(a.value), np.abs(b.value)
    return (
        A.spread(n) * f(magnitude_a, magnitude_b)
        + f(a.error, magnitude_b + b.error)
        + f(magnitude_a, b.error)
    )


MAPS = {
    "forward": (CONV.forward, (2, 4, 7, 6), (6, 2, 3, 2)),
    "grad_input": (CONV.grad_input, CONV.output_shape, (6, 2, 3, 2)),
    "grad_weight": (CONV.grad_weight, CONV.output_shape, (2, 4, 7, 6)),
}


@pytest.mark.parametrize("name", MAPS)
@pytest.mark.parametrize("exact", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("dtypes", [("float32", "float16"), ("float64", "float64")])
def test_bilinear_error_is_its_terms(name: str, exact: tuple[bool, bool], dtypes) -> None:
    f, a_shape, b_shape = MAPS[name]
    rng = np.random.default_rng(7)
    a, b = _tracked(a_shape, rng, exact[0]), _tracked(b_shape, rng, exact[1])
    A = Arithmetic(*dtypes)
    n = 13
    got = A.bilinear(f, a, b, n)
    np.testing.assert_array_equal(got.value, f(a.value, b.value))
    underflow = A.eta + n * A.eta_acc
    # rtol: the folded form scales and adds before the convolution's sums, the terms after,
    # so the two differ by rounding alone (at most 6.2e-16 relative over these cases); a
    # dropped term moves the error by 3e-12 relative or more (float64's s), 1e-3 in float16
    np.testing.assert_allclose(
        got.error, _termwise_bilinear(A, f, a, b, n) + underflow, rtol=1e-13, atol=0
    )


def test_bilinear_error_of_an_infinite_operand_is_no_claim_where_it_reaches() -> None:
    """An infinite error (no claim) reaches every output its element feeds and no other."""
    rng = np.random.default_rng(3)
    a, b = _tracked((2, 4, 7, 6), rng, False), _tracked((6, 2, 3, 2), rng, False)
    a.error[0, 0, 3, 3] = np.inf
    A = Arithmetic("float32", "float32")
    got = A.bilinear(CONV.forward, a, b, 13)
    want = _termwise_bilinear(A, CONV.forward, a, b, 13)
    np.testing.assert_array_equal(np.isposinf(got.error), np.isposinf(want))
    assert np.isposinf(got.error).any() and np.isfinite(got.error).any()


@pytest.mark.parametrize("exact", [True, False])
def test_linear_error_is_its_terms(exact: bool) -> None:
    rng = np.random.default_rng(5)
    a = _tracked((2, 3, 9, 8), rng, exact)

    def window_sums(x: np.ndarray) -> np.ndarray:
        return reference.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True) * 9

    A = Arithmetic("float16", "float16")
    got = A.linear(window_sums, a, 9)
    want = window_sums(a.error) + A.spread(9) * window_sums(np.abs(a.value))
    np.testing.assert_array_equal(got.value, window_sums(a.value))
    # rtol: rounding alone, as for the bilinear maps (at most 3.9e-16 relative here); without
    # s the magnitudes' term, float16's s ~ 1e-3 of them, would be missing
    np.testing.assert_allclose(got.error, want + A.eta + 9 * A.eta_acc, rtol=1e-13, atol=0)


@pytest.mark.parametrize("operation", ["sqrt", "power"])
def test_an_unknown_error_stays_unknown(operation: str) -> None:
    """A NaN error is unknown (an infinite one times an exact operand's 0): sqrt and power
    carry it as no claim (NaN or inf), never as the finite error of an exact input."""
    A = Arithmetic("float16", "float16")
    no_claim = A.mul(Tracked(np.array([4.0, 9.0]), np.array([np.inf, 0.0])), A.exact([2.0, 1.0]))
    assert np.isnan(no_claim.error[0]) and np.isfinite(no_claim.error[1])
    got = A.sqrt(no_claim) if operation == "sqrt" else A.power(no_claim, 1 / 3)
    assert not np.isfinite(got.error[0])
    assert np.isfinite(got.error[1])


def test_a_sum_too_long_for_a_bound_is_no_claim() -> None:
    """n u >= 1: gamma_n is infinite, and so is every error the map's magnitudes reach (none
    of the folded terms turns it into -inf or a finite number)."""
    rng = np.random.default_rng(11)
    a, b = _tracked((2, 4, 7, 6), rng, False), _tracked((6, 2, 3, 2), rng, False)
    A = Arithmetic("float16", "float16")
    got = A.bilinear(CONV.forward, a, b, 5000)
    assert not np.isfinite(got.error).any()
    assert not (got.error < 0).any()
