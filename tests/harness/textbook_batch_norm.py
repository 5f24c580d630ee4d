"""A test fixture: batch norm with the textbook one-pass variance E[x^2] - E[x]^2, computed in
the input's dtype (the default of a widely used library). Exact in exact arithmetic; in
floating point it cancels catastrophically when the mean is many standard deviations from 0.
The campaign must fail it; everything else is the reference's."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "textbook-variance"


def batch_norm(
    input: np.ndarray,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    if not training:
        return reference.batch_norm(
            input, running_mean, running_var, weight, bias, training, momentum, eps
        )
    reference.batch_norm(  # validates the call and updates the running statistics, rightly
        input, running_mean, running_var, weight, bias, True, momentum, eps
    )
    axes = (0, *range(2, input.ndim))
    shape = (-1, *([1] * (input.ndim - 2)))
    mean = input.mean(axis=axes, dtype=input.dtype)
    mean_of_squares = (input * input).mean(axis=axes, dtype=input.dtype)
    var = np.maximum(mean_of_squares - mean * mean, 0)  # one pass: cancels for |mean| >> std
    y = (input - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return np.asarray(y, dtype=input.dtype)
