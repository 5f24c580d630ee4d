"""The bounds of conv_max_pool (reference.fused): a 2-d convolution, its output stored in the
tested dtype, then a 2-d max pooling of it; the same bound holds for an implementation that
pools the convolution's sums before storing them (one kernel), since it selects among the
same values, each within the same error.

Forward: c's own error e_p = gamma_n M_p (n = in/groups * kh * kw + 1, M = conv2d(|x|, |W|,
|b|), eta per term, no claim where it may overflow; conformance.judge.block_bounds's moves).
A maximum is 1-Lipschitz in the largest norm, |max_w c_hat - max_w c| <= max_{p in w} e_p,
so the output's bound is the max pool of e over the same windows; the output's own rounding
(c's storage) and the range are block_bounds's _finished.

Backward: the implementation routes each window's gradient g_w to the maximum of its own c_hat.
Where another element of the window may be the larger once computed, c_p + e_p >= c_q - e_q
for every q in the window (e here with c's storage), the window is ambiguous: its candidates
S_w are those p, and g_w may land on any of them (on the reference's first maximum or not),
an error |g_w| at each candidate. Exact ties (integer values, repeated inputs) are ambiguous
that way too: which of tied maxima takes the gradient is max_pool2d's own rule, judged by the
max_pool2d entry, not here. grad_c sums the g_w of the windows that reach a position (at most
prod(pool kernel) of them): gamma_K of the candidates' sum, stored in the tested dtype. Then
conv2d's adjoints carry grad_c's error with |W| and |x| and add their own gamma_k of the
magnitudes (|grad_c| + e), as conformance.judge.fused_bounds does after batch norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import reference
from conformance.catalogue.chains import chain_pooling
from conformance.catalogue.spec import ToleranceContext
from conformance.judge.block_bounds import _abs, _finished, _Steps, _with_bias, gammas
from conformance.judge.error_model import (
    Tolerance,
    unknown_as_infinite,
)
from conformance.judge.fused_bounds import knobs_of
from reference.conv import Convolution
from reference.pool import PoolPlan, plan_pool

AXES = (0, 2, 3)


@dataclass
class _Chain:
    """One example's exact values, in float64 and batched: c, its magnitude, the pool plan."""

    x: np.ndarray
    w: np.ndarray
    unbatched: bool
    conv: Convolution
    c: np.ndarray
    magnitude: np.ndarray
    n: int  # terms of each convolution sum (taps and the bias)
    groups: int
    pool: PoolPlan
    pooling: dict[str, Any]  # max_pool2d's keywords
    steps: _Steps

    @classmethod
    def of(cls, context: ToleranceContext) -> _Chain:
        inputs, config = context.inputs, dict(context.example.config)
        x, w, b = inputs["input"], inputs["weight"], inputs["bias"]
        assert x is not None and w is not None
        unbatched = x.ndim == 3
        xb = x[np.newaxis] if unbatched else x
        knobs = knobs_of(config)
        conv = Convolution(xb.shape, w.shape, *knobs)
        c = _with_bias(conv.forward(xb, w), b)
        magnitude = _with_bias(conv.forward(np.abs(xb), np.abs(w)), _abs(b))
        pooling = chain_pooling(config)
        pool = plan_pool(2, "max_pool2d", c, **pooling)
        steps = _Steps(context.accumulation_dtype, context.dtype)
        n = math.prod(w.shape[1:]) + 1
        return cls(xb, w, unbatched, conv, c, magnitude, n, knobs[3], pool, pooling, steps)

    def own(self, g: Callable[[int], float]) -> np.ndarray:
        """c's own error before its storage: gamma_n M, eta per term, inf where it may overflow."""
        return self.steps.own(self.magnitude, self.n, g)

    def unbatch(self, array: np.ndarray) -> np.ndarray:
        return array[0] if self.unbatched else array


def _forward(chain: _Chain, g: Callable[[int], float]) -> np.ndarray:
    valid, _ = chain.pool.grids()
    return np.where(valid, chain.pool.taps(unknown_as_infinite(chain.own(g)), 0.0), 0.0).max(
        axis=-1
    )


def _backward(
    chain: _Chain,
    grad: np.ndarray,
    exact: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]],
    g: Callable[[int], float],
) -> dict[str, np.ndarray]:
    """Every gradient's bound before its final rounding (module docstring)."""
    own, keep = chain.steps.own, chain.steps.keep
    grad_c, magnitudes = exact
    valid, _ = chain.pool.grids()
    e_c = keep(chain.c, chain.own(g))
    c_taps, e_taps = chain.pool.taps(chain.c, -np.inf), chain.pool.taps(e_c, 0.0)
    lowest = np.where(valid, c_taps - e_taps, -np.inf).max(axis=-1, keepdims=True)
    candidates = valid & (c_taps + e_taps >= lowest)
    ambiguous = candidates.sum(axis=-1, keepdims=True) > 1
    g_w = np.abs(grad)[..., np.newaxis]
    reach = chain.pool.scatter(np.where(candidates, g_w, 0.0))  # |grad_c| whichever is chosen
    moved = chain.pool.scatter(np.where(candidates & ambiguous, g_w, 0.0))
    e_gc = keep(grad_c, moved + own(reach, math.prod(chain.pool.kernel), g))
    a_x, a_w, a_gc = np.abs(chain.x), np.abs(chain.w), np.abs(grad_c)
    # conv's adjoints of |grad_c| + e_gc, by linearity
    through = chain.conv.grad_input(e_gc, a_w), chain.conv.grad_weight(e_gc, a_x)
    summed = [m + t for m, t in zip(magnitudes, through, strict=True)]
    taps = chain.w.shape[0] // chain.groups * math.prod(chain.w.shape[2:])
    positions = chain.c.size // chain.c.shape[1]
    bounds = {
        "grad_input": chain.unbatch(unknown_as_infinite(through[0]) + own(summed[0], taps, g)),
        "grad_weight": unknown_as_infinite(through[1]) + own(summed[1], positions, g),
        "grad_bias": e_gc.sum(AXES) + own((a_gc + e_gc).sum(AXES), positions, g),
    }
    return {name: unknown_as_infinite(bound) for name, bound in bounds.items()}


def conv_max_pool_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """The forward's bound or the gradients'; the scale replaces each gamma_k by u."""
    chain = _Chain.of(context)
    proven, unit = gammas(context.accumulation_dtype)

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if context.direction == "forward":
            strict = {"output": chain.unbatch(_forward(chain, proven))}
            scale = {"output": chain.unbatch(_forward(chain, unit))}
            return _finished(context, strict, scale, chain.n)
        assert context.grad_output is not None
        grad = context.grad_output[np.newaxis] if chain.unbatched else context.grad_output
        (grad_c,) = reference.max_pool2d_backward(grad, chain.c, **chain.pooling)
        a_gc = np.abs(grad_c)
        magnitudes = (
            chain.conv.grad_input(a_gc, np.abs(chain.w)),
            chain.conv.grad_weight(a_gc, np.abs(chain.x)),
        )
        exact = grad_c, magnitudes
        strict = _backward(chain, grad, exact, proven)
        scale = _backward(chain, grad, exact, unit)
        return _finished(context, strict, scale, chain.n)
