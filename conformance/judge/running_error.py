"""Running error analysis: values carried with a bound on their rounding error.

A derivative formula of a nonlinear op (batch norm's, lp pooling's, a residual block's) is a
chain of ATen ops, each rounding its result. Evaluated here on float64 values with each
intermediate's error bound carried along, to first order plus the product of errors
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.3 and Lemma 3.1):

    a + b:       e_a + e_b + r |a + b|
    a * b:       |a| e_b + |b| e_a + e_a e_b + r |a b|
    a / b:       (e_a + |a / b| e_b) / (|b| - e_b) + r |a / b|     (inf once e_b >= |b|)
    sqrt(a):     e_a / (sqrt(a) + sqrt(max(a - e_a, 0))) + r sqrt(a)
    a ** q:      |q| max(|a| +- e_a) ** (q - 1) e_a + 2 r |a ** q|  (pow: within 2 ulps)
    sum of n:    sum e + (gamma_n(u_acc) + u_store) sum |a|
    linear map:  L(e) + (gamma_n(u_acc) + u_store) L(|a|)   for L a sum of n products

with r = u_store the unit roundoff of the dtype results are stored in (each ATen op returns a
tensor of the tested dtype) and u_acc that of the accumulation. Each stored result may also
land among the dtype's subnormals, which adds an absolute eta (half the smallest subnormal,
Higham eq. 2.8) per operation, and a sum of n terms n etas of its accumulation. The oracle
computes the exact
value, within the same expressions at u = 2^-53: both units are carried (``Arithmetic``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from conformance.catalogue.dtypes import underflow_unit
from conformance.judge.error_model import ORACLE_ROUNDOFF, UNIT_ROUNDOFF, gamma


@dataclass(frozen=True)
class Tracked:
    value: np.ndarray
    error: np.ndarray


class Arithmetic:
    """The operations above for one accumulation and storage dtype, plus the oracle's."""

    def __init__(self, accumulation: str, storage: str) -> None:
        self.u_acc = UNIT_ROUNDOFF[accumulation]
        self.u_store = max(UNIT_ROUNDOFF[storage], self.u_acc)
        self.r = self.u_store + ORACLE_ROUNDOFF
        self.eta = underflow_unit(storage)
        self.eta_acc = underflow_unit(accumulation)

    def spread(self, n: int) -> float:
        """The rounding of a sum of n terms, relative to the sum of their magnitudes."""
        return gamma(n, self.u_acc) + self.u_store + gamma(n, ORACLE_ROUNDOFF)

    def rounded(self, value: np.ndarray, error: np.ndarray, n: int = 0) -> Tracked:
        """value with error, plus the underflow of storing it (and of n accumulated terms)."""
        return Tracked(value, error + self.eta + n * self.eta_acc)

    @staticmethod
    def exact(value: np.ndarray | float) -> Tracked:
        array = np.asarray(value, dtype=np.float64)
        return Tracked(array, np.zeros_like(array))

    @staticmethod
    def known(value: np.ndarray, error: np.ndarray) -> Tracked:
        return Tracked(np.asarray(value, dtype=np.float64), np.asarray(error, dtype=np.float64))

    def add(self, a: Tracked, b: Tracked) -> Tracked:
        value = a.value + b.value
        return self.rounded(value, a.error + b.error + self.r * np.abs(value))

    def sub(self, a: Tracked, b: Tracked) -> Tracked:
        value = a.value - b.value
        return self.rounded(value, a.error + b.error + self.r * np.abs(value))

    def neg(self, a: Tracked) -> Tracked:
        return Tracked(-a.value, a.error)

    def mul(self, a: Tracked, b: Tracked) -> Tracked:
        # inf * 0 is NaN, value or error: an error NaN is unknown, read as no claim
        # (unknown_as_infinite) where the bound is finished
        with np.errstate(invalid="ignore"):
            value = a.value * b.value
            error = (
                np.abs(a.value) * b.error
                + np.abs(b.value) * a.error
                + a.error * b.error
                + self.r * np.abs(value)
            )
        return self.rounded(value, error)

    def product(self, a: Tracked, b: Tracked, c: Tracked) -> Tracked:
        """a * b * c multiplied in whichever order the implementation chose: the largest
        error of the three pairings. The order matters where a partial product lands among
        the subnormals: its eta is then scaled by the factor left, so (g * dc) * invstd
        carries eta |invstd| where (g * invstd) * dc carries eta |dc| (torch's double
        backward of an eval-mode batch norm met the first in float16: an underflowed g * dc,
        times an invstd of 46, 14 subnormal steps off)."""
        orders = (
            self.mul(self.mul(a, b), c),
            self.mul(self.mul(a, c), b),
            self.mul(self.mul(b, c), a),
        )
        error = np.maximum(np.maximum(orders[0].error, orders[1].error), orders[2].error)
        return Tracked(orders[0].value, error)

    def scale(self, a: Tracked, c: float) -> Tracked:
        """Times a constant the implementation holds exactly (1/n, p, kernel size)."""
        value = a.value * c
        return self.rounded(value, abs(c) * a.error + self.r * np.abs(value))

    def div(self, a: Tracked, b: Tracked) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = a.value / b.value
            room = np.abs(b.value) - b.error
            error = np.where(
                room > 0, (a.error + np.abs(value) * b.error) / room, np.inf
            ) + self.r * np.abs(value)
        return self.rounded(value, error)

    def sqrt(self, a: Tracked) -> Tracked:
        value = np.sqrt(a.value)
        with np.errstate(divide="ignore", invalid="ignore"):  # inf - inf: NaN, no claim
            low = np.sqrt(np.maximum(a.value - a.error, 0.0))
            # an exact input (error 0) adds nothing; a NaN error (unknown: an infinite one
            # times an exact 0) stays unknown, where "error > 0" would read it as exact
            error = np.where(a.error == 0, 0.0, a.error / (value + low)) + self.r * value
        return self.rounded(value, error)

    def power(self, a: Tracked, q: float) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = np.power(a.value, q)
            if q == 1.0:
                return Tracked(value, a.error)
            if q == 0.0:
                return Tracked(value, np.zeros_like(value))
            extreme = np.maximum(np.abs(a.value) + a.error, 0.0)
            if q < 1:  # |a| ** (q - 1) is largest at the smallest |a|
                extreme = np.maximum(np.abs(a.value) - a.error, 0.0)
            slope = abs(q) * np.power(extreme, q - 1.0)
            error = np.where(a.error == 0, 0.0, slope * a.error) + 2 * self.r * np.abs(value)
        return self.rounded(value, error)

    def where(self, mask: np.ndarray, a: Tracked) -> Tracked:
        """a where mask, else an exact 0 (ReLU's derivative, a kink's convention)."""
        return Tracked(np.where(mask, a.value, 0.0), np.where(mask, a.error, 0.0))

    @staticmethod
    def relu(pre: Tracked) -> Tracked:
        """max(pre, 0): exact, and 1-Lipschitz, so it carries pre's error at most."""
        return Tracked(np.maximum(pre.value, 0.0), pre.error)

    @staticmethod
    def relu_derivative(pre: Tracked, a: Tracked) -> Tracked:
        """a where pre > 0, else 0 (ReLU's derivative at pre, applied to a). Where pre's
        error could put it on the other side of 0 the implementation may pass a or 0: either
        is within |a| + its error."""
        on = pre.value > 0
        certain = np.abs(pre.value) > pre.error
        error = np.where(certain, np.where(on, a.error, 0.0), np.abs(a.value) + a.error)
        return Tracked(np.where(on, a.value, 0.0), error)

    def reduce(self, a: Tracked, axes: tuple[int, ...], mean: bool = False) -> Tracked:
        """Sum (or mean) over ``axes``, kept broadcastable."""
        n = int(np.prod([a.value.shape[i] for i in axes])) if axes else 1
        total = a.value.sum(axis=axes, keepdims=True)
        magnitude = np.abs(a.value).sum(axis=axes, keepdims=True)
        error = a.error.sum(axis=axes, keepdims=True) + self.spread(n + mean) * magnitude
        if mean:
            return self.rounded(total / n, error / n, n)
        return self.rounded(total, error, n)

    def linear(self, function: Callable[[np.ndarray], np.ndarray], a: Tracked, n: int) -> Tracked:
        """A linear map that sums at most n products per output element, with nonnegative
        coefficients of magnitude given by ``function`` on |a| (window sums, scatters)."""
        value = function(a.value)
        spread = self.spread(n)
        if not a.error.any():  # an exact operand: its error adds nothing
            error = spread * function(np.abs(a.value))
        else:  # f(e_a) + s f(|a|) = f(e_a + s |a|): f is linear, one call fewer
            error = function(a.error + spread * np.abs(a.value))
        return self.rounded(value, error, n)

    def bilinear(
        self,
        function: Callable[[np.ndarray, np.ndarray], np.ndarray],
        a: Tracked,
        b: Tracked,
        n: int,
    ) -> Tracked:
        """A bilinear map (a convolution or one of its adjoints) summing n products: its
        error s f(|a|, |b|) + f(e_a, |b| + e_b) + f(|a|, e_b), with s = spread(n) (e_a |b|
        and e_b |a| carried, e_a e_b their product, s of the magnitudes the sum's own). f is
        linear in each argument, so the terms of an inexact operand fold into the magnitude's
        call: f(s |a| + e_a, |b|) where only a errs, f(|a|, s |b| + e_b) where only b, and
        f(s |a| + e_a, |b| + e_b) + (1 - s) f(|a|, e_b) where both do. A convolution call
        is most of this function's time: one to three of them here, besides the value's."""
        spread = self.spread(n)
        # an exact operand (error 0, the usual case for the example's own arrays) adds no
        # term
        a_exact, b_exact = not a.error.any(), not b.error.any()
        magnitude_a, magnitude_b = np.abs(a.value), np.abs(b.value)
        if a_exact and b_exact:
            error = spread * function(magnitude_a, magnitude_b)
        elif b_exact:
            error = function(spread * magnitude_a + a.error, magnitude_b)
        elif a_exact:
            error = function(magnitude_a, spread * magnitude_b + b.error)
        else:
            error = function(spread * magnitude_a + a.error, magnitude_b + b.error)
            if spread < 1.0:  # else s f(|a|, e_b) above holds f(|a|, e_b) already
                error = error + (1.0 - spread) * function(magnitude_a, b.error)
        return self.rounded(function(a.value, b.value), error, n)
