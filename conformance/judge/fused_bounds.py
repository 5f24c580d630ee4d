"""The bounds of conv_bn_relu (reference.fused): conv2d, batch norm on running statistics,
ReLU, computed as torch does it (three ops, each result stored in the tested dtype) or as an
inference engine does it (batch norm folded into the convolution's weights and bias).

Forward, op by op (the running error analysis of conformance.judge.block_bounds): the
convolution's own error gamma_n M, n = in/groups * kh * kw + 1 and M = conv2d(|x|, |W|, |b|),
c stored (rounding, eta, no claim past the range); batch norm on exact statistics carries
c's error times its gain |gamma| r (1 + rho), with rho the relative error of
r = 1 / sqrt(var + eps) and 3u for the products, and adds its own arithmetic's
(conformance.judge.batch_norm_bounds: |gamma| d_x_hat + 2u (|z| + |beta|)); ReLU is exact and
1-Lipschitz, so z's bound is y's.

Folded (ONNX Runtime's ConvBNFusion, which its default optimizations apply when the
parameters are constant initializers, then ConvActivationFusion: one FusedConv; OpenVINO's
and TensorRT's fusions alike): s = gamma / sqrt(var + eps) per channel, W' = W s,
b' = (b - mean) s + beta, y = relu(conv2d(x, W', b')). The fold runs once, on the weights,
in whatever precision the engine stores them (ONNX Runtime folds float16 initializers and
keeps W' in float16: the optimized model is Cast, FusedConv, Cast), so each of its
operations is taken to round in u_f = the larger of the tested dtype's and the
accumulation's unit roundoff. s: var + eps, its root (half the relative error), the division
and the product with gamma, each rounding once: |sigma| <= rho_s = (1 + u_f)^4 - 1, plus
the relative error rho of r in the accumulation (normalizer_errors) for an engine that keeps
r apart. W' = W s rounds once more; b' = ((b - mean) s + beta) rounds three times. Then the
convolution sums x_i W'_i and b' (and an engine that adds the shift apart sums n + 2 terms:
the taps, b s, mean s, beta), so, each term within (1 + rho_s)(1 + u_f)^3 of its exact value,

    |y' - y| <= ((1 + rho_s)(1 + u_f)^3 (1 + gamma_{n+2}) - 1) (|s| (M + |mean|) + |beta|),

plus eta for each folded weight that lands among the subnormals (times the |x| it meets)
and eta per term of the sum. The fold is not the unfused order's rounding: its error is
relative to the sum of the folded terms' magnitudes, where torch's relative error of s
multiplies |c - mean| alone, so with c - mean cancelling (statistics calibrated on the batch)
the fold may err by rho_s |s| M where torch's bound allows u |s| |c - mean|. An
implementation computes one way or the other: the bound is the larger of the two, element
by element. The output's own rounding and the range are conformance.judge.block_bounds's
_finished.

Backward (torch only): ReLU passes g where z > 0, and where |z| is within z's bound the mask
may flip (error |g| there); batch norm's eval backward scales by gamma r (its own error,
batch_norm_backward_own, plus the carried mask error times its gain), grad_bn_weight = sum
g x_hat also feels c's stored error through x_hat (r (1 + rho) e_c); the convolution's
adjoints carry grad_c's error with |W| and |x|, plus gamma_k of the magnitudes
(conformance.judge.block_bounds's residual block, the same moves).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import underflow_unit
from conformance.catalogue.spec import CustomTolerances, OpSpec, ToleranceContext
from conformance.judge.batch_norm_bounds import (
    NormErrors,
    Precision,
    batch_norm_backward_own,
    gain_of,
    normalizer_errors,
)
from conformance.judge.block_bounds import _abs, _finished, _Steps, _with_bias, gammas
from conformance.judge.block_derivative_bounds import Conv2d, _bias_map
from conformance.judge.derivative_bounds import (
    Normalizer,
    _arithmetic,
    _channel_vector,
    _tolerances,
)
from conformance.judge.derivatives import GRAD_GRAD_OUTPUT, JVP_OUTPUT
from conformance.judge.error_model import (
    ORACLE_ROUNDOFF,
    UNIT_ROUNDOFF,
    Tolerance,
    accumulated,
    unknown_as_infinite,
)
from conformance.judge.running_error import Tracked
from reference.conv import Convolution

AXES = (0, 2, 3)


def knobs_of(config: Mapping[str, Any]) -> tuple[Any, Any, Any, int]:
    """conv2d's (stride, padding, dilation, groups) of an example's config."""
    return (
        config.get("stride", 1),
        config.get("padding", 0),
        config.get("dilation", 1),
        config.get("groups", 1),
    )


def _batched(array: np.ndarray | None, unbatched: bool) -> np.ndarray | None:
    return array[np.newaxis] if unbatched and array is not None else array


def _channel(vector: np.ndarray | None, default: float) -> np.ndarray | float:
    return default if vector is None else np.abs(vector).reshape(1, -1, 1, 1)


class _Chain:
    """One example's values, in float64 and batched: c, the normalizer, z, magnitudes."""

    def __init__(self, context: ToleranceContext) -> None:
        inputs, config = context.inputs, context.example.config
        x = inputs["input"]
        w = inputs["weight"]
        mean, var = inputs["running_mean"], inputs["running_var"]
        assert x is not None and w is not None and mean is not None and var is not None
        self.unbatched = x.ndim == 3
        self.x: np.ndarray = x[np.newaxis] if self.unbatched else x
        self.w: np.ndarray = w
        self.b, self.mean = inputs["bias"], mean
        self.gamma, self.beta = inputs["bn_weight"], inputs["bn_bias"]
        self.knobs = knobs_of(config)
        self.u = UNIT_ROUNDOFF[context.accumulation_dtype] + ORACLE_ROUNDOFF
        self.u_fold = max(UNIT_ROUNDOFF[context.dtype], UNIT_ROUNDOFF[context.accumulation_dtype])
        self.eta_fold = underflow_unit(context.dtype)
        self.steps = _Steps(context.accumulation_dtype, context.dtype)
        self.n = math.prod(w.shape[1:]) + 1  # taps and the bias
        self.conv = Convolution(self.x.shape, w.shape, *self.knobs)  # planned once
        self.c = _with_bias(self.conv.forward(self.x, w), self.b)
        self.magnitude = _with_bias(self.conv.forward(np.abs(self.x), np.abs(w)), _abs(self.b))
        # what a folded weight's underflow meets: the window's |x| per output, eta each
        self.window = self.conv.forward(np.abs(self.x), np.ones_like(w))
        self.grad = _batched(context.grad_output, self.unbatched)  # None in the forward
        zeros = np.zeros_like(mean)
        eps = config.get("eps", 1e-5)
        # eval: the statistics are exact inputs, r stays in the accumulation's precision
        self.norm: NormErrors = normalizer_errors(self.c, mean, var, zeros, zeros, eps, self.u)
        self.gain = gain_of(self.gamma, self.norm)  # |gamma| r
        signed = 1.0 if self.gamma is None else self.gamma.reshape(1, -1, 1, 1)
        self.z = self.norm.x_hat * signed + (
            0.0 if self.beta is None else self.beta.reshape(1, -1, 1, 1)
        )
        self.positions = self.c.size // self.c.shape[1]

    def conv_error(self, g: Callable[[int], float]) -> np.ndarray:
        """c's error once stored: gamma_n M, then the storage (block_bounds._Steps)."""
        return self.steps.keep(self.c, self.steps.own(self.magnitude, self.n, g))

    def unfused(self, g: Callable[[int], float]) -> np.ndarray:
        """z's error in torch's order: c's carried through batch norm, and batch norm's own."""
        u, norm = self.u, self.norm
        carried = unknown_as_infinite(self.gain * (1 + norm.rho) * (1 + 3 * u) * self.conv_error(g))
        own = self.gain / norm.r * norm.d_x_hat + 2 * u * (
            np.abs(self.z) + _channel(self.beta, 0.0)
        )
        return carried + own

    def folded(self, g: Callable[[int], float]) -> np.ndarray:
        """z's error with batch norm folded into the convolution (module docstring)."""
        rho_s = (1 + self.u_fold) ** 4 - 1 + (1 + self.norm.rho) * (1 + self.u) - 1
        spread = (1 + rho_s) * (1 + self.u_fold) ** 3 * (1 + g(self.n + 2)) - 1
        terms = self.gain * (self.magnitude + _channel(self.mean, 0.0)) + _channel(self.beta, 0.0)
        underflow = self.eta_fold * (self.window + 3)
        # spread per channel (rho is); accumulated adds eta per term, inf where it may overflow
        summed = accumulated(terms, self.n + 2, 0.0, self.steps.accumulation)
        return spread * terms + summed + underflow

    def pre_relu(self, g: Callable[[int], float]) -> np.ndarray:
        return np.maximum(unknown_as_infinite(self.unfused(g)), self.folded(g))

    @functools.cached_property
    def gradients(self) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """grad_z and grad_c, the exact gradients into batch norm and into the convolution,
        and conv's adjoints of |grad_c|: the same for the bound and the scale."""
        assert self.grad is not None
        grad_z = np.where(self.z > 0, self.grad, 0.0)
        signed = 1.0 if self.gamma is None else self.gamma.reshape(1, -1, 1, 1)
        grad_c = grad_z * signed * self.norm.r
        a_gc = np.abs(grad_c)
        adjoints = (
            self.conv.grad_input(a_gc, np.abs(self.w)),
            self.conv.grad_weight(a_gc, np.abs(self.x)),
        )
        return grad_z, grad_c, adjoints

    def unbatch(self, array: np.ndarray) -> np.ndarray:
        return array[0] if self.unbatched else array


def _backward(
    chain: _Chain, context: ToleranceContext, g: Callable[[int], float]
) -> dict[str, np.ndarray]:
    """Every gradient's bound before its final rounding (module docstring)."""
    grad = chain.grad
    assert grad is not None
    own, keep, u, norm = chain.steps.own, chain.steps.keep, chain.u, chain.norm
    e_z = keep(chain.z, chain.pre_relu(g))
    grad_z, grad_c, magnitudes = chain.gradients
    e_gz = np.where(np.abs(chain.z) <= e_z, np.abs(grad), 0.0)
    bn = batch_norm_backward_own(
        grad_z, chain.gamma, norm, False, g, u, Precision(chain.steps.accumulation)
    )
    n = chain.positions
    d_saved = norm.r * (1 + norm.rho) * chain.conv_error(g)  # x_hat's error from the stored c
    x_hat = np.abs(norm.x_hat)
    extra_weight = (e_gz * (x_hat + norm.d_x_hat + d_saved) + np.abs(grad_z) * d_saved).sum(AXES)
    carried = chain.gain * (1 + norm.rho) * (1 + 3 * u) * e_gz
    e_gc = keep(grad_c, bn["grad_input"] + carried)
    a_x, a_w, a_gc = np.abs(chain.x), np.abs(chain.w), np.abs(grad_c)
    # conv's adjoints of |grad_c| + e_gc, by linearity
    through = chain.conv.grad_input(e_gc, a_w), chain.conv.grad_weight(e_gc, a_x)
    summed = [m + t for m, t in zip(magnitudes, through, strict=True)]
    groups = chain.knobs[3]
    reach = chain.w.shape[0] // groups * math.prod(chain.w.shape[2:])
    bounds = {
        "grad_input": chain.unbatch(unknown_as_infinite(through[0]) + own(summed[0], reach, g)),
        "grad_weight": unknown_as_infinite(through[1]) + own(summed[1], n, g),
        "grad_bias": e_gc.sum(AXES) + own((a_gc + e_gc).sum(AXES), n, g),
        "grad_bn_weight": bn["grad_weight"] + extra_weight * (1 + g(n)),
        "grad_bn_bias": bn["grad_bias"] + e_gz.sum(AXES) * (1 + g(n)),
    }
    return {name: unknown_as_infinite(bound) for name, bound in bounds.items()}


def conv_bn_relu_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """The forward's bound (the larger of torch's order and the fold), or the gradients'; the
    scale replaces each gamma_k by u."""
    chain = _Chain(context)
    proven, unit = gammas(context.accumulation_dtype)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if context.direction == "forward":
            strict = {"output": chain.unbatch(chain.pre_relu(proven))}
            scale = {"output": chain.unbatch(chain.pre_relu(unit))}
        else:
            strict, scale = _backward(chain, context, proven), _backward(chain, context, unit)
        return _finished(context, strict, scale, chain.n)


# --- jvp and double backward ----------------------------------------------------------------


def conv_bn_relu_derivative_tolerances(spec: OpSpec) -> CustomTolerances:
    """reference.fused_derivatives's formulas link by link in the running error analysis
    (conformance.judge.running_error): the convolution as bilinear maps of their own sum
    lengths (block_derivative_bounds.Conv2d), batch norm on exact running statistics
    (derivative_bounds.Normalizer), ReLU's mask uncertain where z is within its error."""

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        A = _arithmetic(context)
        inputs, config = context.inputs, context.example.config
        x, w = inputs["input"], inputs["weight"]
        mean, var = inputs["running_mean"], inputs["running_var"]
        assert x is not None and w is not None and mean is not None and var is not None
        unbatched = x.ndim == 3
        stride, padding, dilation, groups = knobs_of(config)
        xb = x[np.newaxis] if unbatched else x
        conv = Conv2d(
            A, w, xb.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
        )

        def batched(a: np.ndarray | None) -> Tracked | None:
            if a is None:
                return None
            return A.exact(a[np.newaxis] if unbatched and a.ndim == 3 else a)

        def channel(a: np.ndarray | None) -> Tracked | None:
            return None if a is None else A.exact(a.reshape(1, -1, 1, 1))

        def unbatch(tracked: Tracked) -> Tracked:
            return Tracked(tracked.value[0], tracked.error[0]) if unbatched else tracked

        X, W = A.exact(xb), A.exact(w)
        b, gain_w, shift = (
            channel(inputs["bias"]),
            channel(inputs["bn_weight"]),
            channel(inputs["bn_bias"]),
        )
        c = conv.forward(X, W)
        if b is not None:
            c = A.add(c, _bias_map(A, b, c.value))
        norm = Normalizer(A, c, config.get("eps", 1e-5), (mean, var))
        z = norm.x_hat if gain_w is None else A.mul(gain_w, norm.x_hat)
        if shift is not None:
            z = A.add(z, shift)
        t = context.tangents
        tx, tw = batched(t["input"]), batched(t["weight"])
        tb, t_gain, t_shift = channel(t["bias"]), channel(t["bn_weight"]), channel(t["bn_bias"])
        assert tx is not None and tw is not None
        dc = conv.jvp(X, tx, W, tw)
        if tb is not None:
            dc = A.add(dc, _bias_map(A, tb, dc.value))
        jvp = A.relu_derivative(z, norm.jvp(dc, gain_w, t_gain, t_shift))
        n = conv.n_forward + 8
        if context.direction == "jvp":
            return _tolerances(context, {JVP_OUTPUT: unbatch(jvp)}, n)
        g = batched(context.grad_output)
        assert g is not None
        h = A.relu_derivative(z, g)  # g m
        k = A.mul(h, norm.r) if gain_w is None else A.product(h, gain_w, norm.r)
        d_input = conv.backward_input(k, tw)
        d_weight = conv.backward_weight(k, tx)
        d_bias = None
        if t_gain is not None:
            q = A.product(h, t_gain, norm.r)
            d_input = A.add(d_input, conv.backward_input(q, W))
            d_weight = A.add(d_weight, conv.backward_weight(q, X))
            d_bias = _channel_vector(A.reduce(q, AXES))
        bounds: dict[str, Tracked | None] = {
            "grad_input": unbatch(d_input),
            "grad_weight": d_weight,
            "grad_bias": None if b is None else d_bias,
            "grad_bn_weight": _channel_vector(norm.total(A.product(h, norm.r, dc))),
            GRAD_GRAD_OUTPUT: unbatch(jvp),
        }
        return _tolerances(context, bounds, n + conv.n_weight)

    return tolerances
