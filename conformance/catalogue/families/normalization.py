"""Catalogue entries of batch normalization and per-channel statistics, with bounds derived
from their arithmetic: the error terms are conformance.judge.batch_norm_bounds's (its
docstring has the derivation); here they become each output's bound, in every dtype. The
normalized error is the error over the same expressions with each gamma_k replaced by u.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec, Region, ToleranceContext, input_array
from conformance.catalogue.strategies.blocks import statistics_examples
from conformance.catalogue.strategies.knobs import omitting_defaults
from conformance.catalogue.strategies.normalization import batch_norm_examples
from conformance.judge.batch_norm_bounds import (
    Precision,
    batch_norm_backward_own,
    gain_of,
    normalizer_errors,
    statistics_errors,
)
from conformance.judge.error_model import (
    ORACLE_ROUNDOFF,
    UNIT_ROUNDOFF,
    Tolerance,
    gamma,
    past_the_range,
    stored,
    unknown_as_infinite,
)


def statistics_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """channel_statistics: the mean's bound, and the variance's scaled by n / (n - correction)
    plus the division's rounding; the scale replaces each gamma_k by u."""
    x = context.inputs["input"]
    assert x is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    u_out = UNIT_ROUNDOFF[context.dtype]
    n = x.size // x.shape[1]
    factor = n / (n - context.example.config["correction"])

    def bounds(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        mean, var, d_mean, d_var = statistics_errors(x, g)
        return {
            "mean": d_mean + (u + u_out) * np.abs(mean),
            "var": factor * d_var + (2 * u + u_out) * factor * var,
        }

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    strict, scale = bounds(proven), bounds(lambda k: u)
    return {name: Tolerance(strict[name], scale[name], 2 * n + 2) for name in strict}


def _bounds(context: ToleranceContext, g: Callable[[int], float]) -> dict[str, np.ndarray]:
    """The bound of every output, with g(k) standing for gamma_k (or u, for the scale)."""
    inputs, config = context.inputs, context.example.config
    x = inputs["input"]
    assert x is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype] + ORACLE_ROUNDOFF
    u_out = UNIT_ROUNDOFF[context.dtype]
    shape = (-1, *([1] * (x.ndim - 2)))
    n = x.size // x.shape[1]
    training, momentum, eps = config["training"], config["momentum"], config["eps"]
    weight, bias = inputs["weight"], inputs["bias"]
    precision = Precision.of(context)
    if training:
        mean, var, d_mean, d_var = statistics_errors(x, g, precision)
        statistics = precision.statistics
    else:  # the running statistics are inputs, and 1/sqrt(var + eps) stays in float32
        running_mean, running_var = inputs["running_mean"], inputs["running_var"]
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
        d_mean, d_var = np.zeros_like(mean), np.zeros_like(var)
        statistics = None
    norm = normalizer_errors(x, mean, var, d_mean, d_var, eps, u, statistics)
    expected = context.expected
    if context.direction == "forward":
        y = expected["output"]
        assert y is not None
        b = 0.0 if bias is None else np.abs(bias).reshape(shape)
        bounds = {
            "output": gain_of(weight, norm) / norm.r * norm.d_x_hat
            + 2 * u * (np.abs(y) + b)
            + u_out * np.abs(y)
        }
        for name, statistic, error, factor in (
            ("running_mean", mean, d_mean, 1.0),
            ("running_var", var, d_var, n / max(n - 1, 1)),
        ):
            new, old = expected.get(name), inputs[name]
            if new is None or old is None:
                continue
            terms = np.abs((1 - momentum) * old) + np.abs(momentum * factor * statistic)
            rounding = 4 * u
            if statistics is not None:
                # the update's products stored in the tested dtype; d mean carries the mean's
                # storage already, the unbiased variance is stored on its own
                rounding += UNIT_ROUNDOFF[statistics]
                if name == "running_var":
                    error = stored(statistic, error, statistics)
            moved = momentum * factor * error + rounding * terms if training else 0 * terms
            bounds[name] = moved + (u_out * np.abs(new) if training else 0.0)
        return bounds
    grad = context.grad_output
    assert grad is not None
    own = batch_norm_backward_own(grad, weight, norm, training, g, u, precision)
    bounds = {}
    for name, bound in own.items():
        want = expected.get(name)
        if want is not None:
            bounds[name] = bound + u_out * np.abs(want)
    return bounds


def batch_norm_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    x = context.inputs["input"]
    assert x is not None
    n = x.size // x.shape[1]

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    with np.errstate(invalid="ignore"):
        bounds = _bounds(context, proven)
        scales = _bounds(context, lambda k: u)
    tolerances = {}
    for name, bound in bounds.items():
        oracle = context.expected[name]
        assert oracle is not None
        bound = past_the_range(unknown_as_infinite(bound), oracle, context.dtype)
        tolerances[name] = Tolerance(bound, scales[name], 2 * n + 2)
    return tolerances


def _no_backward(*arrays: Any, **config: Any) -> tuple[np.ndarray | None, ...]:
    raise NotImplementedError("channel_statistics is checked forward only")


def _terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
    return {}  # batch_norm has its own bound


def _regions() -> dict[str, Region]:
    def has(name: str) -> Region:
        return lambda e: e.arrays[name] is not None

    def spatial(rank: int) -> Region:
        return lambda e: input_array(e).ndim == rank + 2

    def training(on: bool) -> Region:
        return lambda e: bool(e.config["training"]) == on

    regions: dict[str, Region] = {
        "training": training(True),
        "eval": training(False),
        "training without running stats": lambda e: bool(
            e.config["training"] and e.arrays["running_mean"] is None
        ),
        "weight": has("weight"),
        "bias": has("bias"),
        "two values per channel": lambda e: input_array(e).size // input_array(e).shape[1] == 2,
        "momentum 0 or 1": lambda e: e.config["momentum"] in (0.0, 1.0),
        "large mean (wide values)": lambda e: e.values == "wide",
    }
    for rank in range(4):
        regions[f"{rank} spatial dims"] = spatial(rank)
    return regions


def _outputs(config: Any) -> tuple[str, ...]:
    return ("output",)


def _statistics_regions() -> dict[str, Region]:
    return {
        "biased (correction=0)": lambda e: e.config["correction"] == 0,
        "unbiased (correction=1)": lambda e: e.config["correction"] == 1,
        "no spatial dims": lambda e: input_array(e).ndim == 2,
        "two values per channel": lambda e: input_array(e).size // input_array(e).shape[1] == 2,
        "large mean (wide values)": lambda e: e.values == "wide",
    }


def _statistics_outputs(config: Any) -> tuple[str, ...]:
    return ("var", "mean")


SPECS: tuple[OpSpec, ...] = (
    OpSpec(
        name="batch_norm",
        family="normalization",
        reference=reference.batch_norm,
        reference_backward=reference.batch_norm_backward,
        array_args=("input", "running_mean", "running_var", "weight", "bias"),
        differentiable=("input", "weight", "bias"),
        examples=omitting_defaults(batch_norm_examples, reference.batch_norm),
        terms=_terms,
        coverage=_regions(),
        outputs=_outputs,
        tolerances=batch_norm_tolerances,
        mutated=("running_mean", "running_var"),
    ),
    OpSpec(
        name="channel_statistics",
        family="normalization",
        reference=reference.channel_statistics,
        reference_backward=_no_backward,
        array_args=("input",),
        differentiable=(),
        examples=omitting_defaults(statistics_examples, reference.channel_statistics),
        terms=_terms,
        coverage=_statistics_regions(),
        outputs=_statistics_outputs,
        tolerances=statistics_tolerances,
        directions=("forward",),
    ),
)
