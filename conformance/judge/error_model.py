"""How far an implementation's result may lie from the float64 oracle, and how far it did.

For a sum of n products y = sum_i a_i b_i, any summation order in unit roundoff u gives
|y_hat - y| <= gamma_n(u) * M with M = sum_i |a_i b_i| and gamma_n(u) = n u / (1 - n u)
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5 and Lemma 3.1).
Rounding the accumulator to the output dtype adds u_out * |y| (times 1 + u_out, since the
rounded value is y_hat, not y). The oracle is itself a float64 sum, within gamma_n(2^-53) * M
of y, so that term joins the bound: without it a float64 implementation would be judged
against an oracle wrongly assumed exact. M costs one more call of the same bilinear op on
|a| and |b|: in float32 where the tested values are float32 values already (half the float64
pass's time), its own rounding bounded by magnitude_cover.

The report's figure per element is the normalized error
    |y_hat - y_oracle| / (u * M + u_out * |y_oracle|),
which the proof caps at about n; real kernels land near sqrt(n) or below.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import largest, numpy_dtype, underflow_unit

UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}
ORACLE_ROUNDOFF = UNIT_ROUNDOFF["float64"]
# TF32 (NVIDIA tensor cores, float32 storage): each operand is cut to a 10-bit fraction, by
# truncation on some hardware, so its relative error is below 2^-10; the products of two such
# operands are exact in float32 and summed in float32.
TF32_OPERAND_ROUNDOFF = 2.0**-10
UNIT_ROUNDOFF["tf32"] = TF32_OPERAND_ROUNDOFF


def gamma(n: int, u: float) -> float:
    """gamma_n = n u / (1 - n u); infinite once n u >= 1 (no bound is then possible)."""
    if n * u >= 1:
        return float("inf")
    return n * u / (1 - n * u)


@dataclass(frozen=True)
class Measurement:
    """One output tensor of one example, measured against its bound."""

    max_abs_error: float
    normalized_error: float  # max over elements of |err| / (u M + u_out |y|)
    bound_ratio: float  # max over elements of |err| / bound; <= 1 passes
    n_terms: int
    passed: bool
    problem: str  # "" when passed, else what went wrong


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0/0 = 0 and x/0 = inf for x > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / denominator
    ratio[(numerator == 0)] = 0.0
    return ratio


def _special_mismatch(got: np.ndarray, oracle: np.ndarray) -> str:
    """NaN where the oracle has NaN, the same infinities; '' if all agree."""
    nan_expected, nan_got = np.isnan(oracle), np.isnan(got)
    if np.any(nan_expected != nan_got):
        where = np.argwhere(nan_expected != nan_got)[0]
        return (
            f"NaN mismatch at {tuple(int(i) for i in where)}: expected "
            f"{float(oracle[tuple(where)])!r}, got {float(got[tuple(where)])!r}"
        )
    inf_expected, inf_got = np.isinf(oracle), np.isinf(got)
    mismatch = (inf_expected | inf_got) & ~nan_expected & (got != oracle)
    if np.any(mismatch):
        where = tuple(int(i) for i in np.argwhere(mismatch)[0])
        return (
            f"infinity mismatch at {where}: expected {float(oracle[where])!r}, "
            f"got {float(got[where])!r}"
        )
    return ""


def _rejected(problem: str, n_terms: int) -> Measurement:
    return Measurement(float("inf"), float("inf"), float("inf"), n_terms, False, problem)


# measure's and sum_of_products' common case walks its arrays in blocks of this many
# elements, each block's passes in the cache (a few arrays of 256 KiB), not in memory
BLOCK = 32_768


@dataclass(frozen=True)
class _Affine:
    """A sum of products' bound and scale, element by element, from the float64 oracle y
    (finite everywhere) and the magnitude M: with C = factor M and s = u_out |y| + s0,
    bound = k C + s + extra and scale = u C + s. Computed a block at a time, where needed."""

    oracle: np.ndarray  # flat
    magnitude: np.ndarray  # flat, float64 or float32
    shape: tuple[int, ...]  # the oracle's
    factor: float
    k: float
    u: float
    u_out: float
    s0: float
    extra: float

    @functools.cached_property
    def bound_finite(self) -> bool:
        """The bound is finite everywhere: M is (the oracle is, by construction) and the
        coefficients are (gamma_n past 1 means no bound, and inf * 0 is NaN where M = 0).
        One pass over M, asked by measure and by the not-judged notes alike."""
        coefficients = math.isfinite(self.k * self.factor) and math.isfinite(self.extra)
        return coefficients and all_finite(self.magnitude)

    def fill(self, block: slice, bound: np.ndarray, scale: np.ndarray, work: np.ndarray) -> None:
        """One block's bound and scale into ``bound`` and ``scale`` (``work``: scratch, as
        long as the block)."""
        np.abs(self.oracle[block], out=work)
        work *= self.u_out
        work += self.s0
        np.multiply(self.magnitude[block], self.factor, out=scale, dtype=np.float64)
        np.multiply(scale, self.k, out=bound)
        bound += work
        if self.extra:
            bound += self.extra
        scale *= self.u
        scale += work


class Tolerance:
    """What one output may deviate by, element-wise, and the unit its error is reported in:
    ``bound`` (|got - oracle| <= bound passes) and ``scale`` (normalized error = |got -
    oracle| / scale), for ``n_terms`` terms; ``underflow_included``: with_underflow's terms
    are in already. sum_of_products' common case makes the arrays only when asked for them:
    measure takes them a block at a time, in the cache."""

    __slots__ = ("_affine", "_bound", "_scale", "n_terms", "underflow_included")

    def __init__(
        self,
        bound: np.ndarray | None,
        scale: np.ndarray | None,
        n_terms: int,
        underflow_included: bool = False,
        affine: _Affine | None = None,
    ) -> None:
        self._bound, self._scale, self._affine = bound, scale, affine
        self.n_terms, self.underflow_included = n_terms, underflow_included

    @property
    def bound(self) -> np.ndarray:
        return self._arrays()[0]

    @property
    def scale(self) -> np.ndarray:
        return self._arrays()[1]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(bound, scale), made whole from the affine form the first time they are asked for."""
        if self._bound is None or self._scale is None:
            affine = self._affine
            assert affine is not None
            bound, scale = np.empty(affine.oracle.size), np.empty(affine.oracle.size)
            work = np.empty(min(BLOCK, affine.oracle.size))
            with np.errstate(invalid="ignore", over="ignore"):  # no bound: inf * 0 where M = 0
                for start in range(0, affine.oracle.size, BLOCK):
                    block = slice(start, start + BLOCK)
                    affine.fill(block, bound[block], scale[block], work[: bound[block].size])
            self._bound, self._scale = bound.reshape(affine.shape), scale.reshape(affine.shape)
        return self._bound, self._scale

    def all_finite(self) -> bool:
        """No element of the bound infinite (or NaN): a claim everywhere."""
        if self._bound is None and self._affine is not None:
            return self._affine.bound_finite
        return all_finite(self.bound)

    def __repr__(self) -> str:
        return f"Tolerance(bound={self.bound!r}, scale={self.scale!r}, n_terms={self.n_terms})"


def sum_of_products(
    oracle: np.ndarray,
    magnitude: np.ndarray,
    n_terms: int,
    accumulation_dtype: str,
    output_dtype: str,
    magnitude_dtype: str = "float64",
    underflow: bool = False,
) -> Tolerance:
    """The bound of a sum of ``n_terms`` products (module docstring).

    ``magnitude`` is the same op applied to the absolute values of its operands (M above),
    evaluated in ``magnitude_dtype`` (float64 or float32); its own rounding is covered
    (magnitude_cover). ``underflow``: with with_underflow's terms added already.
    """
    u, u_out = UNIT_ROUNDOFF[accumulation_dtype], UNIT_ROUNDOFF[output_dtype]
    spread = gamma(n_terms, u) + gamma(n_terms, ORACLE_ROUNDOFF)
    if accumulation_dtype == "tf32":
        # |fl(a)fl(b) - ab| <= (2 t + t^2)|ab| per product, then a float32 sum of the rounded
        # products, each at most (1 + t)^2 |ab|: spread = 2t + t^2 + gamma_n(u32)(1 + t)^2.
        t = TF32_OPERAND_ROUNDOFF
        spread = 2 * t + t * t + gamma(n_terms, UNIT_ROUNDOFF["float32"]) * (1 + t) ** 2
        spread += gamma(n_terms, ORACLE_ROUNDOFF)
    factor, floor = magnitude_cover(n_terms, magnitude_dtype)
    eta = _underflow_eta(n_terms, accumulation_dtype, output_dtype) if underflow else 0.0
    # bound = k (M factor + floor) + u_out |y| + eta, scale = u (M factor + floor) + ...
    k = (1 + u_out) * spread
    if magnitude.shape == oracle.shape and all_finite(oracle):  # the common case, blocked
        affine = _Affine(
            np.ravel(oracle),
            np.ravel(magnitude),
            oracle.shape,
            factor,
            k,
            u,
            u_out,
            u * floor + eta,
            (k - u) * floor if floor else 0.0,  # the bound's share of the floor, past the scale's
        )
        return Tolerance(None, None, n_terms, underflow, affine)
    finite = np.isfinite(oracle)
    covered = np.where(finite, magnitude.astype(np.float64) * factor + floor, 0.0)
    size = np.where(finite, np.abs(oracle), 0.0)
    bound = k * covered + u_out * size + eta
    return Tolerance(
        np.asarray(bound), np.asarray(u * covered + u_out * size + eta), n_terms, underflow
    )


def magnitude_cover(n_terms: int, magnitude_dtype: str) -> tuple[float, float]:
    """(factor, floor): M <= factor * M_hat + floor for M_hat, the magnitude sum of
    ``n_terms`` products evaluated in ``magnitude_dtype``. Every term and partial sum is
    non-negative, so each rounding can only shrink the computed value by a factor (1 - u) and
    by eta below the normal range: after r roundings M_hat >= (1 - u)^r M - r eta, and
    M <= (M_hat + r eta) / (1 - gamma_r). In float64, r = n (a product and its additions;
    underflow past 1e-308 is not drawn) and the factor 1 + gamma_n(2^-53) as before. In
    float32, on operands that are float32 values already, r = 2n + 2 covers any evaluation
    order, a product rounded and then added, a divisor or a bias, and eta = 2^-150."""
    if magnitude_dtype == "float64":
        return 1 + gamma(n_terms, ORACLE_ROUNDOFF), 0.0
    rounds = 2 * n_terms + 2
    spread = gamma(rounds, UNIT_ROUNDOFF[magnitude_dtype])
    if spread >= 1:
        raise ValueError(f"a sum of {n_terms} terms has no bound in {magnitude_dtype}")
    factor = 1 / (1 - spread)
    return factor, factor * rounds * underflow_unit(magnitude_dtype)


_ONES: dict[np.dtype[Any], np.ndarray] = {
    np.dtype(np.float64): np.ones(BLOCK),
    np.dtype(np.float32): np.ones(BLOCK, np.float32),
}


def _total(flat: np.ndarray) -> float:
    """The sum of a 1-d array, NaN or infinite if any element is (or if it overflows): by
    BLAS (a product with ones, three times NumPy's sum's speed) in float64 and float32.
    The caller silences overflow and invalid warnings."""
    ones = _ONES.get(flat.dtype)
    if ones is None or flat.ndim != 1:
        return float(np.sum(flat, dtype=np.float64))
    if flat.size <= BLOCK:
        return float(flat @ ones[: flat.size])
    whole = flat.size - flat.size % BLOCK
    tail = float(flat[whole:] @ ones[: flat.size - whole])
    return float((flat[:whole].reshape(-1, BLOCK) @ ones).sum()) + tail


def all_finite(array: np.ndarray) -> bool:
    """Every element finite, in one pass and no temporary: a sum of finite values is finite
    unless it overflows, and then the caller only takes its general path."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(_total(np.ravel(array))))


def error_bound(
    oracle: np.ndarray,
    magnitude: np.ndarray,
    n_terms: int,
    accumulation_dtype: str,
    output_dtype: str,
) -> np.ndarray:
    return sum_of_products(oracle, magnitude, n_terms, accumulation_dtype, output_dtype).bound


def _underflow_eta(n_terms: int, accumulation_dtype: str, output_dtype: str) -> float:
    return (n_terms + 1) * underflow_unit(accumulation_dtype) + underflow_unit(output_dtype)


def with_underflow(tolerance: Tolerance, accumulation_dtype: str, output_dtype: str) -> Tolerance:
    """``tolerance`` plus what gradual underflow may add: eta per operation of the accumulation
    (about one per term) and one for the final rounding (Higham 2nd ed., eq. 2.8). Nothing
    in float64 or float32 at the magnitudes drawn; up to 3e-8 per term in float16."""
    eta = _underflow_eta(tolerance.n_terms, accumulation_dtype, output_dtype)
    if eta == 0 or tolerance.underflow_included:
        return tolerance
    return Tolerance(tolerance.bound + eta, tolerance.scale + eta, tolerance.n_terms, True)


def _range_of(dtype: str) -> str:
    """The dtype whose exponent range ``dtype`` has (TF32 is float32's)."""
    return "float32" if dtype == "tf32" else dtype


def accumulated(
    magnitude: np.ndarray, n_terms: int, spread: float, accumulation_dtype: str
) -> np.ndarray:
    """The own error of a sum of ``n_terms`` products of total magnitude ``magnitude``
    (sum |a_i b_i|) accumulated in ``accumulation_dtype``: ``spread`` (gamma_n, or the sum of
    gammas a caller counts) times the magnitude, plus eta per product and one for the result
    (Higham 2nd ed., eq. 2.8; additions underflow exactly). Infinite where a partial sum may
    overflow (its magnitude with the error reaches the largest finite value): the sum may then
    be inf, or NaN from inf - inf, and no bound holds."""
    eta = (n_terms + 1) * underflow_unit(_range_of(accumulation_dtype))
    error = spread * magnitude + eta
    top = largest(_range_of(accumulation_dtype))
    return np.where(magnitude + error >= top, np.inf, error)


def stored(value: np.ndarray, error: np.ndarray, dtype: str) -> np.ndarray:
    """The error of an intermediate known within ``error`` of ``value`` once stored in
    ``dtype`` between two steps: fl(v) = v (1 + delta) + eta with |delta| <= u and the stored
    operand within |value| + error, so error + u (|value| + error) + eta. Infinite where
    |value| + error reaches the dtype's largest finite value: the stored value may be infinite,
    and whatever is computed from it inf or NaN (inf * 0, inf - inf)."""
    u = UNIT_ROUNDOFF[dtype]
    reach = np.abs(value) + error
    bound = error + u * reach + underflow_unit(_range_of(dtype))
    return np.where(reach >= largest(_range_of(dtype)), np.inf, bound)


def past_the_range(bound: np.ndarray, oracle: np.ndarray, dtype: str) -> np.ndarray:
    """``bound``, infinite where it reaches past the dtype's largest finite value on the far
    side of zero (bound >= largest + |oracle|): the computed value may then overflow to the
    infinity of either sign, and every finite value lies within the bound anyway, so no claim
    is left to make. (measure accepts an overflow only with the oracle's sign.)"""
    with np.errstate(invalid="ignore"):
        beyond = bound >= largest(_range_of(dtype)) + np.abs(oracle)
    return np.where(beyond, np.inf, bound)


def unknown_as_infinite(error: np.ndarray) -> np.ndarray:
    """A propagated error bound with NaN (an infinite error times a zero weight, inf - inf)
    read as infinite: an error that may be anything stays unbounded downstream."""
    return np.where(np.isnan(error), np.inf, error)


def _same_bits(got: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """Element-wise: both NaN, or equal including the sign of zero."""
    if oracle.dtype.kind != "f":  # not a NumPy float (bfloat16's kind is V)
        return np.asarray(got == oracle)
    got64 = got.astype(np.float64)
    both_nan = np.isnan(got64) & np.isnan(oracle)
    return both_nan | ((got64 == oracle) & (np.signbit(got64) == np.signbit(oracle)))


def measure(
    got: np.ndarray,
    oracle: np.ndarray,
    tolerance: Tolerance | None,
    expected_dtype: str,
) -> Measurement:
    """Measure ``got`` against the float64 (or integer) ``oracle``.

    ``tolerance`` None means exact: values (NaN-aware, signed zeros told apart) and integers
    must match bit for bit. Integers are always exact, except where a given tolerance's bound
    is infinite (no claim).
    """
    n_terms = 0 if tolerance is None else tolerance.n_terms
    if got.shape != oracle.shape:
        return _rejected(f"shape {got.shape}, expected {oracle.shape}", n_terms)
    if got.dtype != numpy_dtype(expected_dtype):
        return _rejected(f"dtype {got.dtype}, expected {expected_dtype}", n_terms)
    if oracle.size == 0:
        return Measurement(0.0, 0.0, 0.0, n_terms, True, "")
    # (dtype.kind == 'f' is issubdtype(dtype, np.floating), without its 2 us a call)
    integer = oracle.dtype.kind != "f"
    if tolerance is None or integer:
        same = _same_bits(got, oracle)
        if tolerance is not None:  # integers: exact where a claim is made, none where inf
            same |= np.isposinf(tolerance.bound)
        if same.all():
            return Measurement(0.0, 0.0, 0.0, 0, True, "")
        where = tuple(int(i) for i in np.argwhere(~same)[0])
        problem = (
            f"not bitwise equal at {where}: expected {oracle[where].item()!r}, got "
            f"{got[where].item()!r}"
        )
        return _rejected(problem, 0)
    quick = _measured_finite(got, oracle, tolerance)
    if quick is not None:
        return quick
    got64 = got.astype(np.float64)
    # Where the bound reaches past the dtype's largest finite value, the correctly signed
    # infinity is a right answer: rounding may overflow (IEEE 754 round to nearest).
    reach = np.abs(oracle) + tolerance.bound
    overflowed = np.isfinite(oracle) & (reach >= largest(expected_dtype)) & np.isinf(got64)
    overflowed &= np.signbit(got64) == np.signbit(oracle)
    got64 = np.where(overflowed, oracle, got64)
    # An infinite bound is no claim (a custom error model's way to say the arithmetic may
    # have decided the result's sign, or whether it is a number): any value passes there.
    got64 = np.where(np.isposinf(tolerance.bound), oracle, got64)
    problem = _special_mismatch(got64, oracle)
    if problem:
        return _rejected(problem, n_terms)
    finite = np.isfinite(oracle)
    with np.errstate(invalid="ignore"):  # inf - inf where the oracle is not finite
        error = np.where(finite, np.abs(got64 - oracle), 0.0)
    normalized = _safe_ratio(error, tolerance.scale)
    ratio = _safe_ratio(error, tolerance.bound)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    passed = bool(ratio[worst] <= 1.0)
    problem = ""
    if not passed:
        problem = (
            f"error {error[worst]:.3g} at {tuple(int(i) for i in worst)} exceeds the bound "
            f"{tolerance.bound[worst]:.3g} (expected {float(oracle[worst])!r}, got "
            f"{float(got64[worst])!r}, n={n_terms})"
        )
    return Measurement(
        float(error.max()), float(normalized.max()), float(ratio[worst]), n_terms, passed, problem
    )


def _measured_finite(
    got: np.ndarray, oracle: np.ndarray, tolerance: Tolerance
) -> Measurement | None:
    """measure's common case, block by block in the cache: the oracle, the result and the
    bound all finite, the bound and the scale of the oracle's shape, and the result within
    its bound. None otherwise: measure's general path then finds the overflows, special
    values and the worst element. The same figures: 0 / 0 is NaN here and ignored by fmax
    (the general path sets it to 0, and every ratio is >= 0). A sum of products' bound and
    scale not made yet are made here a block at a time, never whole."""
    affine = tolerance._affine if tolerance._bound is None else None
    if affine is None:
        if np.shape(tolerance.bound) != oracle.shape or np.shape(tolerance.scale) != oracle.shape:
            return None
        flat_bound, flat_scale = np.ravel(tolerance.bound), np.ravel(tolerance.scale)
    elif affine.shape != oracle.shape:
        return None
    # a sum of products' bound: one look at its magnitude, not one at every block's bound
    bound_finite = affine is not None and affine.bound_finite
    flat_got, flat_oracle = np.ravel(got), np.ravel(oracle)
    buffers = np.empty((5, min(BLOCK, oracle.size)))
    largest_error = worst = normalized = 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, oracle.size, BLOCK):
            block = slice(start, start + BLOCK)
            got_block, oracle_block = flat_got[block], flat_oracle[block]
            error, ratio, bound, scale, work = buffers[:, : oracle_block.size]
            if affine is None:
                bound, scale = flat_bound[block], flat_scale[block]
            else:
                affine.fill(block, bound, scale, work)
            if not bound_finite and not np.isfinite(_total(bound)):
                return None
            np.subtract(got_block, oracle_block, out=error, dtype=np.float64)
            np.abs(error, out=error)
            block_error = float(np.max(error))  # NaN propagates
            if not np.isfinite(block_error):  # an infinity or a NaN in either
                return None
            largest_error = max(largest_error, block_error)
            np.divide(error, bound, out=ratio)
            worst = float(np.fmax(worst, np.fmax.reduce(ratio)))
            if worst > 1.0:  # a failure: the general path finds where and says it
                return None
            np.divide(error, scale, out=ratio)
            normalized = float(np.fmax(normalized, np.fmax.reduce(ratio)))
    return Measurement(largest_error, normalized, worst, tolerance.n_terms, True, "")


def measure_sum_of_products(
    got: np.ndarray,
    oracle: np.ndarray,
    magnitude: np.ndarray,
    n_terms: int,
    accumulation_dtype: str,
    output_dtype: str,
) -> Measurement:
    """Measure ``got`` against the float64 ``oracle`` of a sum of ``n_terms`` products."""
    tolerance = sum_of_products(oracle, magnitude, n_terms, accumulation_dtype, output_dtype)
    return measure(got, oracle, tolerance, output_dtype)
