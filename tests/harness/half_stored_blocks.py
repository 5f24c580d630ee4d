"""A test fixture: batch norm and the two composed blocks as torch runs them in a half dtype,
written out in NumPy. Every op (convolution, batch norm, ReLU, addition, each gradient) is
computed exactly (float64) on its stored operands and its result rounded to the tested dtype,
where torch stores it before the next op reads it; batch norm normalizes, forward and
backward, with its batch mean and 1/sqrt(var + eps) rounded to the tested dtype, as torch's
native_batch_norm keeps save_mean and save_invstd. It declares float32 accumulation (its sums
are exact, better than that). Subnormal intermediates lose their low bits, and a stored
intermediate can overflow where the result would not: the bounds must carry all of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

import reference

name = "half-stored"
F64 = np.float64


def _quiet(function: Callable[..., Any]) -> Callable[..., Any]:
    """Overflow to inf and inf * 0 are part of the arithmetic here, not worth a warning."""

    @functools.wraps(function)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)

    return quiet


def accumulation_dtype(dtype: str) -> str:
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _stored(value: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``value`` rounded to ``like``'s dtype, as float64 for the next exact step."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(value, dtype=F64).astype(like.dtype).astype(F64)


def _f64(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.astype(F64)


def _channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape(-1, *([1] * (ndim - 2)))


def _statistics(x: np.ndarray, eps: float, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batch mean and 1/sqrt(var + eps), each rounded to ``like``'s dtype."""
    axes = (0, *range(2, x.ndim))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return _stored(mean, like), _stored(1 / np.sqrt(var + eps), like)


def _norm(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    like: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Training batch norm on a stored x: the stored output and the stored statistics."""
    mean, inv_std = _statistics(x, eps, like)
    y = (x - _channel(mean, x.ndim)) * _channel(inv_std, x.ndim)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return _stored(y, like), (mean, inv_std)


def _norm_backward(
    grad: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray | None,
    saved: tuple[np.ndarray, np.ndarray],
    training: bool,
    like: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_input, grad_weight, grad_bias) from the saved (stored) statistics, each stored."""
    mean, inv_std = saved
    axes = (0, *range(2, x.ndim))
    x_hat = (x - _channel(mean, x.ndim)) * _channel(inv_std, x.ndim)
    grad_bias = grad.sum(axis=axes)
    grad_weight = (grad * x_hat).sum(axis=axes)
    gain = inv_std if weight is None else inv_std * weight
    inner = grad
    if training:
        count = x.size // x.shape[1]
        correction = _channel(grad_bias, x.ndim) + x_hat * _channel(grad_weight, x.ndim)
        inner = grad - correction / count
    grad_input = _channel(gain, x.ndim) * inner
    return _stored(grad_input, like), _stored(grad_weight, like), _stored(grad_bias, like)


@_quiet
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
    x = input.astype(F64)
    if training:
        y, _ = _norm(x, _f64(weight), _f64(bias), eps, input)
        if running_mean is not None and running_var is not None:
            axes = (0, *range(2, x.ndim))
            count = x.size // x.shape[1]
            mean, unbiased = x.mean(axis=axes), x.var(axis=axes) * count / max(count - 1, 1)
            running_mean[...] = (1 - momentum) * running_mean.astype(F64) + momentum * mean
            running_var[...] = (1 - momentum) * running_var.astype(F64) + momentum * unbiased
        return y.astype(input.dtype)
    assert running_mean is not None and running_var is not None
    stats = (running_mean.astype(F64), 1 / np.sqrt(running_var.astype(F64) + eps))
    y = (x - _channel(stats[0], x.ndim)) * _channel(stats[1], x.ndim)
    if weight is not None:
        y = y * _channel(weight.astype(F64), x.ndim)
    if bias is not None:
        y = y + _channel(bias.astype(F64), x.ndim)
    return y.astype(input.dtype)


@_quiet
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
    x = input.astype(F64)
    if training:
        saved = _statistics(x, eps, input)
    else:
        assert running_mean is not None and running_var is not None
        saved = (running_mean.astype(F64), 1 / np.sqrt(running_var.astype(F64) + eps))
    grads = _norm_backward(grad_output.astype(F64), x, _f64(weight), saved, training, input)
    grad_input, grad_weight, grad_bias = (g.astype(input.dtype) for g in grads)
    return (
        grad_input,
        None if weight is None else grad_weight,
        None if bias is None else grad_bias,
    )


def _conv(x: np.ndarray, w: np.ndarray, b: Any, *knobs: Any, like: np.ndarray) -> np.ndarray:
    return _stored(reference.conv2d(x, w, b, *knobs), like)


@_quiet
def depthwise_separable_conv(
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> np.ndarray:
    knobs = (stride, padding, dilation, input.shape[-3])
    x, w_d, b_d = input.astype(F64), depthwise_weight.astype(F64), _f64(depthwise_bias)
    hidden = _conv(x, w_d, b_d, *knobs, like=input)
    out = _conv(hidden, pointwise_weight.astype(F64), _f64(pointwise_bias), like=input)
    return out.astype(input.dtype)


@_quiet
def depthwise_separable_conv_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> tuple[np.ndarray | None, ...]:
    knobs = (stride, padding, dilation, input.shape[-3])
    x, w_d, w_p = input.astype(F64), depthwise_weight.astype(F64), pointwise_weight.astype(F64)
    hidden = _conv(x, w_d, _f64(depthwise_bias), *knobs, like=input)
    grad = grad_output.astype(F64)
    grad_hidden, grad_w_p, grad_b_p = reference.conv2d_backward(
        grad, hidden, w_p, _f64(pointwise_bias)
    )
    grad_hidden = _stored(grad_hidden, input)
    grad_x, grad_w_d, grad_b_d = reference.conv2d_backward(
        grad_hidden, x, w_d, _f64(depthwise_bias), *knobs
    )
    found = (grad_x, grad_w_d, grad_w_p, grad_b_d, grad_b_p)
    return tuple(None if g is None else _stored(g, input).astype(input.dtype) for g in found)


def _residual(
    arrays: list[np.ndarray | None], stride: int, eps: float, like: np.ndarray
) -> dict[str, Any]:
    """The block's forward, every intermediate stored, and what the backward needs."""
    x, w1, g1, b1, w2, g2, b2, w_s, g_s, b_s = arrays
    assert x is not None and w1 is not None and w2 is not None
    a1 = _conv(x, w1, None, stride, 1, like=like)
    n1, saved1 = _norm(a1, g1, b1, eps, like)
    hidden = np.maximum(n1, 0.0)
    a2 = _conv(hidden, w2, None, 1, 1, like=like)
    body, saved2 = _norm(a2, g2, b2, eps, like)
    values: dict[str, Any] = dict(a1=a1, n1=n1, saved1=saved1, hidden=hidden, a2=a2)
    values["saved2"] = saved2
    skip = x
    if w_s is not None:
        a_s = _conv(x, w_s, None, stride, like=like)
        skip, saved_s = _norm(a_s, g_s, b_s, eps, like)
        values.update(a_s=a_s, saved_s=saved_s)
    values["z"] = _stored(body + skip, like)
    return values


@_quiet
def residual_block(input: np.ndarray, *arrays: Any, stride: int = 1, eps: float = 1e-5) -> Any:
    every = [_f64(a) for a in (input, *arrays)]
    every += [None] * (10 - len(every))
    z = _residual(every, stride, eps, input)["z"]
    return np.maximum(z, 0.0).astype(input.dtype)


@_quiet
def residual_block_backward(
    grad_output: np.ndarray, input: np.ndarray, *arrays: Any, stride: int = 1, eps: float = 1e-5
) -> tuple[np.ndarray | None, ...]:
    every = [_f64(a) for a in (input, *arrays)]
    every += [None] * (10 - len(every))
    x, w1, g1, _, w2, g2, _, w_s, g_s, _ = every
    assert x is not None and w1 is not None and w2 is not None
    v = _residual(every, stride, eps, input)
    grad_z = np.where(v["z"] > 0, grad_output.astype(F64), 0.0)
    grad_a2, grad_g2, grad_b2 = _norm_backward(grad_z, v["a2"], g2, v["saved2"], True, input)
    grad_hidden, grad_w2, _ = reference.conv2d_backward(grad_a2, v["hidden"], w2, None, 1, 1)
    grad_n1 = np.where(v["n1"] > 0, _stored(grad_hidden, input), 0.0)
    grad_a1, grad_g1, grad_b1 = _norm_backward(grad_n1, v["a1"], g1, v["saved1"], True, input)
    grad_x, grad_w1, _ = reference.conv2d_backward(grad_a1, x, w1, None, stride, 1)
    found: list[np.ndarray | None] = [
        None, grad_w1, grad_g1, grad_b1, grad_w2, grad_g2, grad_b2, None, None, None
    ]  # fmt: skip
    skip_grad = grad_z
    if w_s is not None:
        grad_as, grad_gs, grad_bs = _norm_backward(grad_z, v["a_s"], g_s, v["saved_s"], True, input)
        skip_grad, grad_ws, _ = reference.conv2d_backward(grad_as, x, w_s, None, stride)
        skip_grad = _stored(skip_grad, input)
        found[7:] = [grad_ws, grad_gs, grad_bs]
    found[0] = _stored(grad_x, input) + skip_grad
    return tuple(None if g is None else _stored(g, input).astype(input.dtype) for g in found)
