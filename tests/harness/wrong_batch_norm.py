"""A deliberately wrong user batch_norm: in training it normalizes with the unbiased
variance (Bessel's n - 1), the classic mix-up; the running statistics it updates are right."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "unbiased-normalizer"


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
    axes = (0, *range(2, input.ndim))
    mean = input.mean(axis=axes)
    var = input.var(axis=axes, ddof=1)  # the bug: Bessel's correction in the normalizer
    reference.batch_norm(
        input, running_mean, running_var, weight, bias, True, momentum, eps
    )  # statistics right
    shape = (-1, *([1] * (input.ndim - 2)))
    y = (input - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(input.dtype)
