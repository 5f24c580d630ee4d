"""Error bounds of the derivative directions of the ops that are not sums of products: lp
pooling, batch norm and the two blocks (conformance.judge.derivatives has the others).

Each bound is the running error analysis (conformance.judge.running_error) of the formula the
reference evaluates (reference.jvp, reference.double_backward): the same chain of
operations, each intermediate stored in the tested dtype, evaluated on float64 values with
every intermediate's error bound carried along. Batch statistics are the two-pass ones plus
Welford's |mean| * std term (conformance.catalogue.families.normalization). An implementation whose
formula is organized otherwise (torch's FunctionsManual groups batch norm's terms its own
way) rounds other intermediates, of the same magnitudes, to first order within the same
bound as long as no grouping cancels more than these terms do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from conformance.catalogue.spec import CustomTolerances, OpSpec, ToleranceContext
from conformance.judge.derivatives import GRAD_GRAD_OUTPUT, JVP_OUTPUT
from conformance.judge.error_model import ORACLE_ROUNDOFF, Tolerance, gamma
from conformance.judge.running_error import Arithmetic, Tracked
from reference import jvp as forward_mode
from reference import pool as reference_pool

Axes = tuple[int, ...]


def _tolerances(
    context: ToleranceContext, bounds: dict[str, Tracked | None], n_terms: int
) -> dict[str, Tolerance]:
    tolerances = {}
    for name, tracked in bounds.items():
        oracle = context.expected.get(name)
        if tracked is None or oracle is None:
            continue
        bound = np.broadcast_to(tracked.error, oracle.shape).astype(np.float64)
        bound = np.where(np.isfinite(oracle), bound, 0.0)
        bound = np.where(np.isnan(bound), np.inf, bound)  # 0 * inf: no claim
        tolerances[name] = Tolerance(bound, bound / max(n_terms, 1), n_terms)
    return tolerances


def _no_claim(
    tolerances: dict[str, Tolerance], unclaimed: Mapping[str, np.ndarray]
) -> dict[str, Tolerance]:
    """An infinite bound (no claim: any value, NaN included, passes) where ``unclaimed``."""
    claimed = {}
    for name, tolerance in tolerances.items():
        mask = unclaimed.get(name)
        if mask is None or not mask.any():
            claimed[name] = tolerance
            continue
        bound = np.where(mask, np.inf, tolerance.bound)
        scale = np.where(mask, np.inf, tolerance.scale)
        claimed[name] = Tolerance(bound, scale, tolerance.n_terms)
    return claimed


def _arithmetic(context: ToleranceContext) -> Arithmetic:
    return Arithmetic(context.accumulation_dtype, context.dtype)


def _exact(value: np.ndarray | None) -> Tracked | None:
    return None if value is None else Arithmetic.exact(value)


# --- batch norm -----------------------------------------------------------------------------


def _channel_axes(ndim: int) -> Axes:
    return (0, *range(2, ndim))


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, *([1] * (ndim - 2)))


class Normalizer:
    """r = 1 / sqrt(var + eps) and x_hat = (a - mean) r of batch norm's input a (with its own
    error), on batch statistics or on exact running ones."""

    def __init__(
        self,
        arithmetic: Arithmetic,
        a: Tracked,
        eps: float,
        running: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        A = self.A = arithmetic
        ndim = a.value.ndim
        self.axes = _channel_axes(ndim)
        self.n = a.value.size // a.value.shape[1]
        if running is None:
            mean = A.reduce(a, self.axes, mean=True)
            centered = A.sub(a, mean)
            var = A.reduce(A.mul(centered, centered), self.axes, mean=True)
            # Welford and pairwise merges lose up to n u |mean| std more (families.normalization)
            welford = (gamma(2 * self.n + 2, A.u_acc) + gamma(2 * self.n + 2, ORACLE_ROUNDOFF)) * (
                np.abs(mean.value) * np.sqrt(var.value)
            )
            var = Tracked(var.value, var.error + welford)
        else:
            mean = A.exact(_per_channel(running[0], ndim))
            var = A.exact(_per_channel(running[1], ndim))
            centered = A.sub(a, mean)
        self.r = A.div(A.exact(1.0), A.sqrt(A.add(var, A.exact(eps))))
        self.x_hat = A.mul(centered, self.r)
        self.training = running is None

    def mean(self, t: Tracked) -> Tracked:
        return self.A.reduce(t, self.axes, mean=True)

    def total(self, t: Tracked) -> Tracked:
        return self.A.reduce(t, self.axes)

    def _centred(self, dx: Tracked) -> Tracked:
        """dx - mean(dx) - x_hat mean(x_hat dx) (dx itself on running statistics)."""
        A = self.A
        if not self.training:
            return dx
        return A.sub(A.sub(dx, self.mean(dx)), A.mul(self.x_hat, self.mean(A.mul(self.x_hat, dx))))

    def tangent_of_x_hat(self, dx: Tracked) -> Tracked:
        """d x_hat = r (dx - mean(dx) - x_hat mean(x_hat dx)) (r dx on running statistics)."""
        return self.A.mul(self.r, self._centred(dx))

    def jvp(
        self, dx: Tracked | None, w: Tracked | None, dw: Tracked | None, db: Tracked | None
    ) -> Tracked:
        A = self.A
        terms: list[Tracked] = []
        if dx is not None:
            # w r dx: three factors in whichever order the implementation multiplies them
            # (float16's conv_bn_relu jvp: (w dx) underflowed, then times r)
            centred = self._centred(dx)
            terms.append(A.mul(self.r, centred) if w is None else A.product(w, self.r, centred))
        if dw is not None:
            terms.append(A.mul(dw, self.x_hat))
        if db is not None:
            terms.append(A.mul(db, A.exact(np.ones_like(self.x_hat.value))))
        total = terms[0]
        for term in terms[1:]:
            total = A.add(total, term)
        return total

    def backward_input(self, g: Tracked, w: Tracked | None) -> Tracked:
        """w r (g - mean(g) - x_hat mean(g x_hat)) (w r g on running statistics)."""
        A = self.A
        inner = g
        if self.training:
            inner = A.sub(
                A.sub(g, self.mean(g)), A.mul(self.x_hat, self.mean(A.mul(g, self.x_hat)))
            )
        gain = self.r if w is None else A.mul(w, self.r)
        return A.mul(gain, inner)

    def second(
        self, g: Tracked, w: Tracked | None, dx: Tracked | None, dw: Tracked | None
    ) -> tuple[Tracked, Tracked]:
        """(d grad_input, d grad_weight) along (dx, dw): reference.double_backward's
        batch_norm_second."""
        A = self.A
        one = A.exact(1.0)
        w_ = one if w is None else w
        dx_ = A.exact(np.zeros_like(self.x_hat.value)) if dx is None else dx
        if not self.training:
            # three factors in whichever order the implementation multiplies them
            # (Arithmetic.product: an underflowed partial product is scaled by the third)
            d_input = A.product(g, A.exact(0.0) if dw is None else dw, self.r)
            return d_input, self.total(A.product(g, dx_, self.r))
        a = A.sub(A.sub(g, self.mean(g)), A.mul(self.x_hat, self.mean(A.mul(g, self.x_hat))))
        dr = A.neg(A.mul(A.mul(self.r, self.r), self.mean(A.mul(self.x_hat, dx_))))
        d_x_hat = self.tangent_of_x_hat(dx_)
        d_a = A.neg(
            A.add(
                A.mul(d_x_hat, self.mean(A.mul(g, self.x_hat))),
                A.mul(self.x_hat, self.mean(A.mul(g, d_x_hat))),
            )
        )
        d_input = A.add(A.mul(A.mul(w_, dr), a), A.mul(A.mul(w_, self.r), d_a))
        if dw is not None:
            d_input = A.add(A.mul(A.mul(dw, self.r), a), d_input)
        return d_input, self.total(A.mul(g, d_x_hat))


def _channel_vector(tracked: Tracked) -> Tracked:
    return Tracked(tracked.value.reshape(-1), tracked.error.reshape(-1))


def batch_norm_derivative_tolerances(spec: OpSpec) -> CustomTolerances:
    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        A = _arithmetic(context)
        inputs, config = context.inputs, context.example.config
        x = inputs["input"]
        assert x is not None
        if x.shape[0] == 0:
            return {}
        ndim = x.ndim

        def channel(values: np.ndarray | None) -> Tracked | None:
            return None if values is None else A.exact(_per_channel(values, ndim))

        running = None
        if not config["training"]:
            running_mean, running_var = inputs["running_mean"], inputs["running_var"]
            assert running_mean is not None and running_var is not None
            running = (running_mean, running_var)
        norm = Normalizer(A, A.exact(x), config["eps"], running)
        w = channel(inputs["weight"])
        t = context.tangents
        tangent_x = _exact(t["input"])
        jvp = norm.jvp(tangent_x, w, channel(t["weight"]), channel(t["bias"]))
        # torch's formulas multiply r ** 3 (the tangent of r) into products it forms in its
        # own order: an intermediate that underflows is amplified by the factors after it,
        # at most r ** 3 |w| |dx| |x - mean| each taken as at least 1 (per channel)
        amplified = _at_least_one(
            norm.r.value**3,
            1.0 if w is None else w.value,
            np.abs(norm.x_hat.value / norm.r.value).max(axis=norm.axes, keepdims=True),
            0.0 if tangent_x is None else np.abs(tangent_x.value).max(),
        ) * (8 * A.eta)
        jvp = Tracked(jvp.value, jvp.error + amplified)
        n = 2 * norm.n + 8
        if context.direction == "jvp":
            return _tolerances(context, {JVP_OUTPUT: jvp}, n)
        assert context.grad_output is not None
        d_input, d_weight = norm.second(
            A.exact(context.grad_output), w, tangent_x, channel(t["weight"])
        )
        g_size = _at_least_one(np.abs(context.grad_output).max(), norm.r.value**2)
        d_input = Tracked(d_input.value, d_input.error + amplified * g_size)
        bounds: dict[str, Tracked | None] = {
            "grad_input": d_input,
            "grad_weight": None if inputs["weight"] is None else _channel_vector(d_weight),
            GRAD_GRAD_OUTPUT: jvp,
        }
        return _tolerances(context, bounds, n)

    return tolerances


# --- lp pooling -----------------------------------------------------------------------------


def _at_least_one(*factors: np.ndarray | float) -> np.ndarray:
    """The product of max(1, |factor|): what an intermediate's eta may be multiplied by."""
    total = np.ones(())
    with np.errstate(over="ignore", invalid="ignore"):
        for factor in factors:
            total = total * np.maximum(1.0, np.abs(np.asarray(factor, dtype=np.float64)))
    return total


def _underflow_in_any_order(
    A: Arithmetic, factors: Sequence[np.ndarray | float], rest: np.ndarray
) -> np.ndarray:
    """Where a product of several factors is formed in an order of the implementation's
    choosing, the eta of an intermediate product that underflows is multiplied by the
    factors applied after it: at most eta times the product of max(1, |factor|) over all of
    them, for each of its k roundings. ``rest``: the part summed over windows (already a
    product of magnitudes, each taken as at least 1 by the caller's max below)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.maximum(1.0, np.asarray(rest, dtype=np.float64))
        for factor in factors:
            total = total * np.maximum(1.0, np.asarray(factor, dtype=np.float64))
        result = (len(factors) + 3) * A.eta * total
    return np.where(np.isnan(result), np.inf, result)


def lp_derivative_tolerances(spec: OpSpec) -> CustomTolerances:
    """torch's lp pooling is (k * avg_pool(x ** p)) ** (1/p) with sign * relu(|.|) around the
    sum; its derivatives chain pow's, the pooling's and the scalings'. The bound follows
    reference.jvp's and reference.double_backward's formulas with those extra scalings.
    Where a window's S may have rounded to 0 or across it (|S| within its error: odd p's
    x ** p < 0 may cancel), whether S ** (1/p - 1) is a number is the implementation's
    rounding's choice: no claim on what reads that window, as lp_tolerances decides for the
    forward and backward (a bfloat16 S of +0.03 for an exact -0.078 gives torch numbers
    where the float64 oracle, and torch in float64, give NaN)."""
    dims = int(spec.name[-2])

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        A = _arithmetic(context)
        config = context.example.config
        x = context.inputs["input"]
        (v,) = context.tangents.values()
        assert x is not None and v is not None
        plan, p, sums = forward_mode.lp_parts(
            dims,
            x,
            config["norm_type"],
            config["kernel_size"],
            config.get("stride"),
            config.get("ceil_mode", False),
        )
        k = math.prod(plan.kernel)
        shape = (*plan.input.shape[:2], *plan.out_size)

        def window(a: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", over="ignore"):
                return reference_pool._window_sums(plan, a)

        def scatter(a: np.ndarray) -> np.ndarray:
            return reference_pool._spread(plan, np.broadcast_to(a, shape))

        def pooled(a: Tracked) -> Tracked:  # k * avg_pool: a window sum and two scalings
            return A.scale(A.scale(A.linear(window, a, k), 1.0 / k), float(k))

        xb = A.exact(plan.input)
        vb = A.exact(v[np.newaxis] if plan.unbatched else v)
        nonzero = sums != 0
        # windows whose S may have rounded to 0 or across it: no claim (docstring)
        crossing = np.zeros(sums.shape, dtype=bool)
        if p == 1.0:
            jvp = pooled(vb)
        else:
            S = pooled(A.power(xb, p))
            with np.errstate(invalid="ignore"):
                crossing = nonzero & (S.error >= np.abs(S.value))
            slope = A.where(nonzero, A.power(S, 1.0 / p - 1.0))
            x_to_p_minus_1 = A.power(xb, p - 1.0)
            inner = pooled(A.scale(A.mul(x_to_p_minus_1, vb), p))
            jvp = A.scale(A.mul(slope, inner), 1.0 / p)
        finish = (lambda a: a[0]) if plan.unbatched else (lambda a: a)
        jvp = Tracked(finish(jvp.value), finish(jvp.error))
        unclaimed = {JVP_OUTPUT: finish(crossing), GRAD_GRAD_OUTPUT: finish(crossing)}
        unclaimed["grad_input"] = finish(scatter(crossing.astype(np.float64)) > 0)
        if context.direction == "jvp":
            return _no_claim(_tolerances(context, {JVP_OUTPUT: jvp}, 2 * k + 8), unclaimed)
        assert context.grad_output is not None
        g = A.exact(context.grad_output[np.newaxis] if plan.unbatched else context.grad_output)
        if p == 1.0:
            grad_input = A.exact(np.zeros_like(plan.input))
        else:
            # S, slope and x ** (p - 1) as the jvp's above
            first = A.linear(scatter, A.mul(g, slope), k)
            d_sums = A.scale(pooled(A.mul(x_to_p_minus_1, vb)), p)
            curvature = A.scale(A.where(nonzero, A.power(S, 1.0 / p - 2.0)), 1.0 / p - 1.0)
            second = A.linear(scatter, A.mul(A.mul(g, curvature), d_sums), k)
            left = A.mul(A.scale(A.mul(A.power(xb, p - 2.0), vb), p - 1.0), first)
            if p < 2.0:
                # at x = 0, x ** (p - 2) is inf: the term is inf times ``first``, whose sign,
                # or whether it is 0 (then NaN), is rounding's choice where ``first`` is within
                # its error of 0 (bfloat16 torch: NaN, float32: +inf, the exact value -inf)
                with np.errstate(invalid="ignore"):
                    undecided = (xb.value == 0) & (first.error >= np.abs(first.value))
                unclaimed["grad_input"] = unclaimed["grad_input"] | finish(undecided)
            grad_input = A.add(left, A.mul(x_to_p_minus_1, second))
            # 0 ** (p - 2) is inf for p < 2, as above, and a window's S = 0 makes its
            # powers inf: the underflow terms are then inf, no claim
            with np.errstate(divide="ignore"):
                grad_input = Tracked(
                    grad_input.value,
                    grad_input.error
                    + _underflow_in_any_order(
                        A,
                        [abs(p - 1.0), np.abs(xb.value) ** (p - 2.0), np.abs(vb.value)],
                        scatter(_at_least_one(g.value, np.abs(S.value) ** (1.0 / p - 1.0))),
                    )
                    + _underflow_in_any_order(
                        A,
                        [np.abs(xb.value) ** (p - 1.0)],
                        scatter(
                            _at_least_one(
                                g.value,
                                abs(1.0 / p - 1.0),
                                np.abs(S.value) ** (1.0 / p - 2.0),
                                d_sums.value,
                            )
                        ),
                    ),
                )
        grad_input = Tracked(finish(grad_input.value), finish(grad_input.error))
        found = _tolerances(context, {"grad_input": grad_input, GRAD_GRAD_OUTPUT: jvp}, 3 * k + 12)
        return _no_claim(found, unclaimed)

    return tolerances


# --- depthwise-separable convolution and the residual block ---------------------------------
