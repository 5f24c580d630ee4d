"""Fusion chains: the op sequences that compilers and inference engines fuse into one kernel.

conv_bn_relu is a 2-d convolution, batch norm on running statistics (eval mode) and ReLU,

    c = conv2d(x, W, b, stride, padding, dilation, groups)
    z = (c - running_mean) / sqrt(running_var + eps) * bn_weight + bn_bias
    y = max(z, 0),

the chain an engine folds into the convolution (W' = W * bn_weight / sqrt(running_var +
eps), b' = (b - running_mean) * bn_weight / sqrt(running_var + eps) + bn_bias) and ends with
a fused ReLU. The reference composes its own conv2d and batch_norm; the running statistics
are constants, not differentiated (torch keeps them as buffers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._arguments import IntOrTuple, as_float_array, check_bias, check_ndim, real
from reference.conv import check_grad_output, check_same_dtype, conv2d, conv2d_backward
from reference.normalization import batch_norm, batch_norm_backward


@dataclass(frozen=True)
class ConvBnPass:
    """The forward values of conv_bn_relu that its derivatives need, batched."""

    input: np.ndarray  # (N, C, H, W), a batch axis added to an unbatched input
    unbatched: bool
    conv: np.ndarray  # c = conv2d(x, W, b)
    normalized: np.ndarray  # z = batch_norm(c) on the running statistics, before the ReLU


def _check_conv_bn(
    input: object,
    weight: object,
    bias: object,
    running_mean: object,
    running_var: object,
    bn_weight: object,
    bn_bias: object,
    eps: object,
) -> tuple[np.ndarray, bool]:
    """Validate the arrays under their own names (the inner batch_norm would call bn_weight
    ``weight``); return the input with a batch axis and whether one was added. The knobs
    (stride, padding, dilation, groups) are conv2d's own, checked there under their names."""
    x = as_float_array(input, "input")
    check_ndim(x, "input", (3, 4), "conv_bn_relu takes (C, H, W) or (N, C, H, W)")
    w = as_float_array(weight, "weight")
    check_ndim(w, "weight", (4,), "conv_bn_relu takes (out, in/groups, kh, kw)")
    out = w.shape[0]
    arrays = {"weight": w, "bias": check_bias(bias, out, "bias")}
    for name, vector in (("running_mean", running_mean), ("running_var", running_var)):
        if vector is None:
            raise TypeError(f"{name} must be a numpy.ndarray, got None: eval mode needs it")
        arrays[name] = check_bias(vector, out, name)
    arrays["bn_weight"] = check_bias(bn_weight, out, "bn_weight")
    arrays["bn_bias"] = check_bias(bn_bias, out, "bn_bias")
    check_same_dtype(x, **arrays)
    if not real(eps, "eps") >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    unbatched = x.ndim == 3
    return (x[np.newaxis] if unbatched else x), unbatched


def conv_bn_forward(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn_weight: np.ndarray | None = None,
    bn_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> ConvBnPass:
    """conv_bn_relu's intermediates (ConvBnPass), after its argument checks."""
    x, unbatched = _check_conv_bn(
        input, weight, bias, running_mean, running_var, bn_weight, bn_bias, eps
    )
    c = conv2d(x, weight, bias, stride, padding, dilation, groups)
    z = batch_norm(c, running_mean, running_var, bn_weight, bn_bias, False, 0.0, eps)
    return ConvBnPass(x, unbatched, c, z)


def conv_bn_relu(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn_weight: np.ndarray | None = None,
    bn_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> np.ndarray:
    """relu(batch_norm(conv2d(x, W, b, stride, padding, dilation, groups), running_mean,
    running_var, bn_weight, bn_bias, training=False, eps=eps)); (C, H, W) or (N, C, H, W)
    input. The arguments follow torch.nn.utils.fusion.fuse_conv_bn_weights's order."""
    values = conv_bn_forward(
        input, weight, bias, running_mean, running_var, bn_weight, bn_bias, stride, padding,
        dilation, groups, eps,
    )  # fmt: skip
    out = np.maximum(values.normalized, 0.0)  # NaN stays NaN, as in torch.relu
    return out[0] if values.unbatched else out


def conv_bn_relu_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn_weight: np.ndarray | None = None,
    bn_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of (input, weight, bias, bn_weight, bn_bias), None for an absent one: ReLU
    passes the gradient where z > 0 (torch's threshold_backward), batch norm in eval scales
    it by bn_weight / sqrt(running_var + eps) (grad_bn_weight = sum g x_hat, grad_bn_bias =
    sum g), and conv2d_backward carries it to the input, weight and bias."""
    v = conv_bn_forward(
        input, weight, bias, running_mean, running_var, bn_weight, bn_bias, stride, padding,
        dilation, groups, eps,
    )  # fmt: skip
    grad = check_grad_output(grad_output, v.normalized.shape, v.unbatched, v.input.dtype)
    grad_z = np.where(v.normalized > 0, grad, 0.0).astype(grad.dtype)
    grad_conv, grad_bn_weight, grad_bn_bias = batch_norm_backward(
        grad_z, v.conv, running_mean, running_var, bn_weight, bn_bias, False, 0.0, eps
    )
    grad_input, grad_weight, grad_bias = conv2d_backward(
        grad_conv, v.input, weight, bias, stride, padding, dilation, groups
    )
    return (
        grad_input[0] if v.unbatched else grad_input,
        grad_weight,
        grad_bias,
        grad_bn_weight,
        grad_bn_bias,
    )
