"""Batch normalization and per-channel activation statistics (the notebook's section 12).

batch_norm mirrors torch.nn.functional.batch_norm (Ioffe and Szegedy 2015): per channel c,
over the batch and spatial axes (n values),

    training:  mean = sum(x) / n,  var = sum((x - mean)**2) / n   (biased: the normalizer)
               running_mean <- (1 - momentum) * running_mean + momentum * mean
               running_var  <- (1 - momentum) * running_var + momentum * var * n / (n - 1)
               (unbiased: what is stored), updated in place as torch does
    eval:      mean, var = running_mean, running_var
    y = (x - mean) / sqrt(var + eps) * weight + bias

and its gradient in training, with x_hat = (x - mean) * r, r = 1 / sqrt(var + eps):

    grad_bias = sum(g),  grad_weight = sum(g * x_hat),
    grad_input = weight * r * (g - (grad_bias + x_hat * grad_weight) / n);

in eval the statistics are constants: grad_input = weight * r * g.
"""

from __future__ import annotations

import math

import numpy as np

from reference._arguments import as_float_array, flag, int_arg, real
from reference.conv import check_grad_output


def _channel_axes(input: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, input.ndim))


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape(-1, *([1] * (ndim - 2)))


def _check(
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    training: bool,
    momentum: float,
    eps: float,
    updates: bool = False,
) -> np.ndarray:
    """Validate a batch_norm call; ``updates``: the call writes the running statistics."""
    input = as_float_array(input, "input")
    if input.ndim < 2:
        raise ValueError(f"input must be (N, C, *), got shape {input.shape}")
    training = flag(training, "training")
    channels = input.shape[1]
    for name, array in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if array is None:
            continue
        as_float_array(array, name)
        if array.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {array.shape}")
        if array.dtype != input.dtype:
            raise TypeError(
                f"{name} must have the input's dtype ({input.dtype}), got {array.dtype}"
            )
        if updates and training and name.startswith("running") and not array.flags.writeable:
            raise ValueError(f"{name} must be writeable: training updates it in place")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var must be given in evaluation mode")
    if training and input.shape[0] > 0 and input.size // max(channels, 1) <= 1:
        raise ValueError(
            f"training needs more than one value per channel, got input shape {input.shape}"
        )
    real(momentum, "momentum")
    if not real(eps, "eps") >= 0:  # NaN too: it would make every output NaN
        raise ValueError(f"eps must be non-negative, got {eps}")
    return input


def mean_over(values: np.ndarray, axes: tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """values.mean(axis=axes) bit for bit - the same sum, then the division by the count -
    without np.mean's Python-level bookkeeping, a sixth of a residual block's oracle, which
    takes dozens of such means on small arrays. float16 and empty means go to np.mean (it
    sums float16 in float32, and warns of an empty mean)."""
    count = math.prod(values.shape[axis] for axis in axes)
    if values.dtype == np.float16 or count == 0:
        return np.asarray(values.mean(axis=axes, keepdims=keepdims))
    if keepdims:
        return np.add.reduce(values, axis=axes, keepdims=True) / count
    return np.asarray(np.add.reduce(values, axis=axes) / count)


def _statistics(input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance (two passes)."""
    axes = _channel_axes(input)
    mean = mean_over(input, axes)
    centered = input - _per_channel(mean, input.ndim)
    return mean, mean_over(centered * centered, axes)


def batch_norm(
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    """torch.nn.functional.batch_norm; updates running_mean and running_var in place."""
    input = _check(
        input, running_mean, running_var, weight, bias, training, momentum, eps, updates=True
    )
    if input.shape[0] == 0:  # an empty batch: nothing to normalize, no statistics (torch)
        return input.copy()
    if training:
        mean, var = _statistics(input)
        count = input.size // input.shape[1]
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * count / (count - 1)
    else:
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
    scale = 1.0 / np.sqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    out = (input - _per_channel(mean, input.ndim)) * _per_channel(scale, input.ndim)
    if bias is not None:
        out = out + _per_channel(bias, input.ndim)
    return out.astype(input.dtype)


def batch_norm_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(grad_input, grad_weight, grad_bias) of batch_norm (None for an absent weight, bias).

    Takes the running statistics as they were before the forward call."""
    input = _check(input, running_mean, running_var, weight, bias, training, momentum, eps)
    grad = check_grad_output(grad_output, input.shape, False, input.dtype)
    if input.shape[0] == 0:  # the forward ignored its parameters: their gradients are 0
        zeros = np.zeros(input.shape[1], dtype=input.dtype)
        return (
            grad.copy(),
            None if weight is None else zeros,
            None if bias is None else zeros.copy(),
        )
    axes = _channel_axes(input)
    if training:
        mean, var = _statistics(input)
    else:
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (input - _per_channel(mean, input.ndim)) * _per_channel(inv_std, input.ndim)
    grad_bias = grad.sum(axis=axes)
    grad_weight = (grad * x_hat).sum(axis=axes)
    gain = inv_std if weight is None else inv_std * weight
    if training:
        count = input.size // input.shape[1]
        correction = _per_channel(grad_bias, input.ndim) + x_hat * _per_channel(
            grad_weight, input.ndim
        )
        grad_input = _per_channel(gain, input.ndim) * (grad - correction / count)
    else:
        grad_input = _per_channel(gain, input.ndim) * grad
    return (
        grad_input.astype(input.dtype),
        None if weight is None else grad_weight.astype(input.dtype),
        None if bias is None else grad_bias.astype(input.dtype),
    )


def channel_statistics(input: np.ndarray, correction: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(var, mean) per channel over batch and space, torch.var_mean(input, dim=(0, 2, ...),
    correction=correction) in torch's names: correction 0 is the biased variance, 1 the
    unbiased (Bessel's) one."""
    input = as_float_array(input, "input")
    if input.ndim < 2:
        raise ValueError(f"input must be (N, C, *), got shape {input.shape}")
    correction = int_arg(correction, "correction")
    axes = _channel_axes(input)
    count = input.size // input.shape[1] if input.shape[1] else 0
    if count == 0:  # an empty batch or space: NaN, as torch gives (np.mean would warn)
        mean = np.full(input.shape[1], np.nan, dtype=input.dtype)
    else:
        mean = mean_over(input, axes)
    centered = input - _per_channel(mean, input.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (centered * centered).sum(axis=axes) / max(count - correction, 0)
    return var.astype(input.dtype), mean.astype(input.dtype)


def dead_channel_fraction(activations: np.ndarray, threshold: float = 0.0) -> float:
    """Share of channels whose activations never exceed ``threshold`` anywhere in the batch
    (dead ReLUs: the checklist's "inspect activation statistics and dead channels")."""
    activations = as_float_array(activations, "activations")
    if activations.ndim < 2 or activations.shape[1] == 0:
        raise ValueError(f"activations must be (N, C, *) with C > 0, got {activations.shape}")
    if np.isnan(real(threshold, "threshold")):
        raise ValueError("threshold must be a number, got NaN (nothing would exceed it)")
    alive = (activations > threshold).any(axis=_channel_axes(activations))
    return float(1.0 - alive.mean())
