"""Batch normalization's error terms, from its arithmetic (the bound of batch_norm and of
the batch norms inside residual_block).

Per channel, over n values, every gamma and u below counted once for the implementation's
precision and once for the float64 oracle's:

    mean:   |d mean| <= gamma_n * A,  A = mean |x|
    var:    |d var|  <= gamma_{2n+2} * (var + |mean| * std) + d mean**2
            The two-pass algorithm, sum (x - fl(mean))**2 / n, is within gamma_{n+2} * var of
            the exact sum around fl(mean), which exceeds the variance by exactly d mean**2.
            Welford's (and its pairwise merges') error grows with the condition number
            kappa = |mean| / std: relative error about n u kappa (Chan, Golub and LeVeque,
            "Algorithms for computing the sample variance", Am. Stat. 37, 1983, the
            updating algorithm), i.e. n u |mean| std absolute: the |mean| * std term. The
            textbook one pass, E[x^2] - E[x]^2, loses n u kappa**2 * var = n u mean**2 and is
            outside this bound once kappa is large: a wrong algorithm, not a rounding.
    r = 1 / sqrt(s), s = var + eps: with D = |d var| + u s, r' = 1/sqrt(s + d), |d| <= D,
            falls by at most 1 - 1/sqrt(1 + D/s) (<= D / 2s) and rises by at most
            1/sqrt(1 - D'/s) - 1, unbounded once D' >= s, where D' leaves out d var's
            d mean**2 part (it only raises the variance); then the root's and the division's
            roundings: relative error rho.
    y = (x - mean) * r * w + b, which implementations also form as x * (r w) + (b - mean r w):
            |w| d_x_hat + 2u (|y| + |b|), d_x_hat = r (d mean (1 + rho) + |x - mean| rho +
            3u (|x| + |mean|)), the product of the two errors included.
    running statistics: momentum times the statistic's error, plus 4u of each term.
    backward (training): grad_bias a sum of n terms; grad_weight = sum g * x_hat, its error
    sum |g| d_x_hat plus the sum's own; grad_input = |w| r (g - (grad_bias + x_hat
    grad_weight) / n) carries those errors over n (and the product d_x_hat d grad_weight), the
    gain's rho on the whole (times 1 + the inner error), and 3u of each of its three terms
    (they can cancel).
In eval the statistics are inputs: their error terms vanish.

Half precision (float16, bfloat16): Precision. torch's CPU kernel accumulates in float32 but
keeps the batch statistics it normalizes with, save_mean and save_invstd, in the input's
dtype (native_batch_norm returns them as float16 for float16 input and weights), and both the
output and the backward are computed from those rounded values. Brute force: y formed exactly
from the float16-rounded mean and 1/sqrt(var + eps), then rounded, matches torch's float16
output in 99.7% of elements, against 34% for y from the float32 statistics; the gradients
likewise (bit for bit in tests/conformance/test_half_precision_blocks.py, where at
|mean| / std = 300 the rounded mean turns an exact grad_input of 38.2 into -inf). In bfloat16
save_invstd is off by up to 2.6 u_out, more than its own rounding: the variance is rounded
too. So where the accumulation is wider than the tested dtype, mean and var are stored
(d -> d + u_out (|value| + d) + eta_out, conformance.judge.error_model.stored) before d var takes
d mean**2 and r is formed, and r is stored (rho -> rho + u_out (1 + rho) + eta_out / r). The
running statistics' update, whose products are rounded to the tested dtype too (bfloat16's
running_mean is off by up to 1.7 u_out times its terms, more than one rounding), adds u_out
of its terms. In eval torch keeps 1/sqrt(running_var + eps) in float32 (its output is the
float32 formula rounded once). Every sum also underflows by at most eta of its accumulation
per term (Higham 2nd ed., eq. 2.8; sums of stored values underflow exactly, their divisions
by eta), and where a sum's magnitude reaches the accumulation's largest value it may
overflow: no claim there (conformance.judge.error_model.accumulated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from conformance.catalogue.dtypes import underflow_unit
from conformance.catalogue.spec import ToleranceContext
from conformance.judge.error_model import (
    UNIT_ROUNDOFF,
    accumulated,
    stored,
    unknown_as_infinite,
)
from reference.normalization import mean_over


def _channels(values: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, values.ndim))


def channel_mean(values: np.ndarray) -> np.ndarray:
    """values.mean over every axis but the channels', bit for bit, without np.mean's
    Python-level bookkeeping (reference.normalization.mean_over): a residual block's backward
    bound takes a dozen such means."""
    return mean_over(values, _channels(values))


@dataclass(frozen=True)
class Precision:
    """Where batch norm's arithmetic runs (module docstring): its sums in ``accumulation``,
    and the batch statistics stored in ``statistics`` (a narrower tested dtype), or kept in
    the accumulation's precision (None)."""

    accumulation: str
    statistics: str | None = None

    @classmethod
    def of(cls, context: ToleranceContext) -> Precision:
        wider = context.accumulation_dtype != context.dtype
        return cls(context.accumulation_dtype, context.dtype if wider else None)

    @property
    def eta(self) -> float:
        return underflow_unit(self.accumulation)


def statistics_errors(
    x: np.ndarray, g: Callable[[int], float], precision: Precision | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: mean, biased variance, and their error bounds (module docstring). With a
    ``precision``, also the underflow and overflow of the sums and the statistics' storage."""
    axes, shape = _channels(x), (-1, *([1] * (x.ndim - 2)))
    n = x.size // x.shape[1]
    mean = channel_mean(x)
    var = channel_mean((x - mean.reshape(shape)) ** 2)
    size = channel_mean(np.abs(x))
    d_mean = g(n) * size
    if precision is not None:
        # the sum of x (its terms are stored values, so it underflows exactly), over n: the
        # division underflows by at most eta
        d_mean = accumulated(n * size, 0, g(n), precision.accumulation) / n + precision.eta
        if precision.statistics is not None:
            d_mean = stored(mean, d_mean, precision.statistics)
    d_var = g(2 * n + 2) * (var + np.abs(mean) * np.sqrt(var)) + d_mean**2
    if precision is not None:
        # n squares of x - mean, each within (|x - mean| + d mean)**2, summed and divided
        squares = ((np.abs(x - mean.reshape(shape)) + d_mean.reshape(shape)) ** 2).sum(axis=axes)
        d_var = d_var + accumulated(squares, n, 0.0, precision.accumulation) / n + precision.eta
        if precision.statistics is not None:
            d_var = stored(var, d_var, precision.statistics)
    return mean, var, d_mean, d_var


@dataclass(frozen=True)
class NormErrors:
    """A normalizer's values and error terms, broadcast against its input (module docstring):
    r = 1/sqrt(var + eps), its relative error rho, x_hat = (x - mean) r and d_x_hat."""

    r: np.ndarray
    rho: np.ndarray
    x_hat: np.ndarray
    d_x_hat: np.ndarray


def normalizer_errors(
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    d_mean: np.ndarray,
    d_var: np.ndarray,
    eps: float,
    u: float,
    statistics: str | None = None,
) -> NormErrors:
    """r = 1/sqrt(var + eps) and its relative error rho (module docstring), stored in
    ``statistics`` where that is given. d_var's d_mean**2 part only raises the variance (the
    squares around a shifted mean exceed the variance by the shift squared), so r may fall by
    up to 1 - 1/sqrt(1 + D/s) <= D / (2 s) but rise only by 1/sqrt(1 - D'/s) - 1, D' without
    that part. d_x_hat bounds |x_hat' - x_hat| for x_hat' = (x - mean') r' wholly, the product
    of the two errors included: r (d_mean (1 + rho) + |x - mean| rho + 3u (|x| + |mean|))."""
    shape = (-1, *([1] * (x.ndim - 2)))
    s = var + eps
    r = (1 / np.sqrt(s)).reshape(shape)
    # an infinite variance (inf / inf) or error makes NaN: unknown, no claim downstream
    with np.errstate(divide="ignore", invalid="ignore"):
        rises = (d_var + u * s) / s  # var's error and eps's addition, relative to s
        falls = (np.maximum(d_var - d_mean**2, 0.0) + u * s) / s
        up = 1 / np.sqrt(1 - np.minimum(falls, 1)) - 1
        rho = np.maximum(1 - 1 / np.sqrt(1 + rises), np.where(falls < 1, up, np.inf))
    rho = (1 + rho) * (1 + u) ** 2 - 1  # the square root and the division
    if statistics is not None:
        rho = rho + UNIT_ROUNDOFF[statistics] * (1 + rho) + underflow_unit(statistics) * np.sqrt(s)
    rho = rho.reshape(shape)
    centered = x - mean.reshape(shape)
    with np.errstate(invalid="ignore"):
        d_x_hat = r * (
            d_mean.reshape(shape) * (1 + rho)
            + np.abs(centered) * rho
            + 3 * u * (np.abs(x) + np.abs(mean).reshape(shape))
        )
    d_x_hat = unknown_as_infinite(d_x_hat)
    return NormErrors(r, rho, centered * r, d_x_hat)


def training_errors(
    x: np.ndarray,
    eps: float,
    g: Callable[[int], float],
    u: float,
    precision: Precision | None = None,
) -> NormErrors:
    """The normalizer of training mode, on batch statistics with their errors."""
    statistics = None if precision is None else precision.statistics
    return normalizer_errors(x, *statistics_errors(x, g, precision), eps, u, statistics)


def gain_of(weight: np.ndarray | None, norm: NormErrors) -> np.ndarray:
    """|w| r, broadcast against the input (r alone without a weight)."""
    return norm.r if weight is None else norm.r * np.abs(weight).reshape(norm.r.shape)


def batch_norm_own_bound(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    g: Callable[[int], float],
    u: float,
    precision: Precision | None = None,
) -> tuple[np.ndarray, NormErrors]:
    """Training mode on exact x: the bound of y from batch norm's own arithmetic (without
    the output dtype's rounding, the caller's), and the normalizer's terms."""
    norm = training_errors(x, eps, g, u, precision)
    shape = norm.r.shape
    y = norm.x_hat * (1.0 if weight is None else weight.reshape(shape))
    b = 0.0 if bias is None else bias.reshape(shape)
    own = gain_of(weight, norm) / norm.r * norm.d_x_hat + 2 * u * (np.abs(y + b) + np.abs(b))
    return own, norm


def batch_norm_backward_own(
    grad: np.ndarray,
    weight: np.ndarray | None,
    norm: NormErrors,
    training: bool,
    g: Callable[[int], float],
    u: float,
    precision: Precision | None = None,
) -> dict[str, np.ndarray]:
    """Bounds of (grad_input, grad_weight, grad_bias) from batch norm's backward arithmetic on
    an exact grad (module docstring); the output dtype's rounding is the caller's. With a
    ``precision``, the sums' underflow (eta per term) and overflow (no claim) too."""
    axes, shape = _channels(grad), norm.r.shape
    n = grad.size // grad.shape[1]
    grad_bias = grad.sum(axis=axes)
    grad_weight = (grad * norm.x_hat).sum(axis=axes)
    d_bias = g(n) * np.abs(grad).sum(axis=axes)
    d_weight = (np.abs(grad) * norm.d_x_hat).sum(axis=axes) + g(n) * np.abs(grad * norm.x_hat).sum(
        axis=axes
    )
    eta = 0.0
    if precision is not None:
        eta = precision.eta
        d_bias = accumulated(np.abs(grad).sum(axis=axes), n, g(n), precision.accumulation)
        products = (np.abs(grad) * (np.abs(norm.x_hat) + norm.d_x_hat)).sum(axis=axes)
        d_weight = d_weight + accumulated(products, n, 0.0, precision.accumulation)
    if training:
        correction = (grad_bias.reshape(shape) + norm.x_hat * grad_weight.reshape(shape)) / n
        inner = grad - correction
        # x_hat' grad_weight' errs by |x_hat| d_weight + d_x_hat |grad_weight| + their product
        d_correction = (
            d_bias.reshape(shape)
            + np.abs(norm.x_hat) * d_weight.reshape(shape)
            + norm.d_x_hat * (np.abs(grad_weight) + d_weight).reshape(shape)
        ) / n
        d_inner = d_correction + 3 * u * (np.abs(grad) + np.abs(correction) + d_correction)
    else:
        inner, d_inner = grad, 3 * u * np.abs(grad)
    gain = gain_of(weight, norm)
    grad_input = gain * inner
    # the gain errs relatively by rho: gain' inner' - gain inner, their product included
    d_grad_input = gain * (d_inner * (1 + norm.rho) + np.abs(inner) * norm.rho)
    # the two divisions by n underflow by eta each (times the gain), the products by eta
    lost = 2 * eta * gain + 2 * eta if training else 2 * eta
    return {
        "grad_input": d_grad_input + 2 * u * (np.abs(grad_input) + d_grad_input) + lost,
        "grad_weight": d_weight,
        "grad_bias": d_bias,
    }


def batch_norm_carry(delta: np.ndarray, weight: np.ndarray | None, norm: NormErrors) -> np.ndarray:
    """First order, how an error delta >= 0 in training batch norm's input moves its output,
    and (the same linear structure) how an error in grad_output moves grad_input:
    |w| r (delta + mean(delta) + |x_hat| mean(|x_hat| delta)), means per channel, from
    d mean = mean(delta) and d var = 2 mean((x - mean) delta)."""
    shape = norm.r.shape
    spread = channel_mean(delta).reshape(shape)
    tilt = channel_mean(np.abs(norm.x_hat) * delta).reshape(shape)
    return gain_of(weight, norm) * (delta + spread + np.abs(norm.x_hat) * tilt)


# How far an input error may move a channel's variance, relative to var + eps, for the first
# order carry to stand: 1/(1 + e)^(1/2) departs from 1 - e/2 by under 0.8 e^2 for e <= 1/4,
# a fifth of the first-order term there. Past it (a bfloat16 residual block whose conv output
# errs by as much as a small-variance channel's spread: -75,264 where the exact gradient is
# -6.4 and the first-order bound 7,260) the carry is no claim.
LINEAR_VARIANCE_SHIFT = 0.25


def carried_input_error(
    delta: np.ndarray, weight: np.ndarray | None, norm: NormErrors
) -> np.ndarray:
    """batch_norm_carry for an error in the normalized input itself, infinite over a
    channel where that error may move the variance by more than LINEAR_VARIANCE_SHIFT of
    var + eps: 2 mean(|x - mean| delta) + mean(delta)^2, over var + eps = 1 / r^2."""
    shape = norm.r.shape
    spread = channel_mean(np.abs(norm.x_hat) * delta).reshape(shape)  # times 1/r
    shift = channel_mean(delta).reshape(shape) * norm.r
    with np.errstate(invalid="ignore", over="ignore"):
        moved = 2 * spread * norm.r + shift**2
        carried = batch_norm_carry(delta, weight, norm)
    return np.where(moved > LINEAR_VARIANCE_SHIFT, np.inf, carried)
