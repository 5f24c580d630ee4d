"""Forward mode and second derivatives of the fusion chains (reference.fused), by the rules
of reference.jvp and reference.double_backward.

conv_bn_relu, with c = conv2d(x, W, b), r = 1 / sqrt(running_var + eps) per channel,
x_hat = (c - running_mean) r, z = gamma x_hat + beta (gamma = bn_weight, beta = bn_bias),
y = relu(z) and m = [z > 0] (ReLU's derivative, as torch's threshold_backward takes it):

    jvp:  dy = m (gamma r dc + d_gamma x_hat + d_beta),  dc = conv2d(dx, W) + conv2d(x, dW) + db.

The first backward is G_x = C_x^T(k; W), G_W = C_W^T(k; x), G_b = sum k with
k = g m gamma r, and G_gamma = sum g m x_hat, G_beta = sum g m (C_x^T, C_W^T: the
convolution's adjoints, conv2d_backward). With cotangents v of those five gradients,
L = sum_i <v_i, G_i> = <g, m (gamma r dc_v + v_gamma x_hat + v_beta)>, dc_v the convolution's
tangent along (v_x, v_W, v_b) (m is constant almost everywhere), so with q = g m v_gamma r:

    dL/dx = C_x^T(k; v_W) + C_x^T(q; W)      dL/dW = C_W^T(k; v_x) + C_W^T(q; x)
    dL/db = sum q      dL/dgamma = sum g m r dc_v      dL/dbeta = 0      dL/dg = jvp along v.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference import fused
from reference._arguments import as_float_array
from reference.conv import Convolution
from reference.double_backward import Cotangents, Result, _filled, _grad, _zeros
from reference.jvp import Tangents, batch_norm_parts, check_tangents, conv2d_jvp

_DIFFERENTIABLE = ("input", "weight", "bias", "bn_weight", "bn_bias")


def _per_channel(values: np.ndarray | None, default: float = 1.0) -> np.ndarray | float:
    return default if values is None else np.asarray(values).reshape(1, -1, 1, 1)


def _batched(array: np.ndarray | None, unbatched: bool) -> np.ndarray | None:
    return array[np.newaxis] if unbatched and array is not None else array


def conv_bn_relu_jvp(
    tangents: Tangents,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn_weight: np.ndarray | None = None,
    bn_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> np.ndarray:
    """The tangent of conv_bn_relu's output (module docstring), for tangents of (input,
    weight, bias, bn_weight, bn_bias); the running statistics are constants."""
    arrays = (input, weight, bias, running_mean, running_var, bn_weight, bn_bias)
    v = fused.conv_bn_forward(*arrays, stride, padding, dilation, groups, eps)
    primals = tuple(zip(_DIFFERENTIABLE, (input, weight, bias, bn_weight, bn_bias), strict=True))
    dx, dw, db, d_gamma, d_beta = check_tangents(tangents, primals, "conv_bn_relu")
    dc = conv2d_jvp(
        [_batched(dx, v.unbatched), dw, db], v.input, weight, bias, stride, padding, dilation,
        groups,
    )  # fmt: skip
    r, x_hat = batch_norm_parts(v.conv, running_mean, running_var, False, eps)
    return _output_tangent(v, dc, r, x_hat, bn_weight, d_gamma, d_beta)


def _output_tangent(
    v: fused.ConvBnPass,
    dc: np.ndarray,
    r: np.ndarray,
    x_hat: np.ndarray,
    bn_weight: np.ndarray | None,
    d_gamma: np.ndarray | None,
    d_beta: np.ndarray | None,
) -> np.ndarray:
    """dy = m (gamma r dc + d_gamma x_hat + d_beta), from the convolution's tangent dc."""
    dz = _per_channel(bn_weight) * r * dc
    if d_gamma is not None:
        dz = dz + _per_channel(d_gamma) * x_hat
    if d_beta is not None:
        dz = dz + _per_channel(d_beta)
    out = np.where(v.normalized > 0, dz, 0.0).astype(v.input.dtype)
    return out[0] if v.unbatched else out


def conv_bn_relu_double_backward(
    grad_output: np.ndarray,
    grad_grads: Cotangents,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn_weight: np.ndarray | None = None,
    bn_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> Result:
    """(dL/d input, weight, bias, bn_weight, bn_bias; dL/d grad_output) of L = sum_i <v_i,
    conv_bn_relu_backward(grad_output, ...)[i]> (module docstring)."""
    arrays = (input, weight, bias, running_mean, running_var, bn_weight, bn_bias)
    v = fused.conv_bn_forward(*arrays, stride, padding, dilation, groups, eps)
    differentiable = (input, weight, bias, bn_weight, bn_bias)
    primals = tuple(zip(_DIFFERENTIABLE, differentiable, strict=True))
    given = check_tangents(grad_grads, primals, "conv_bn_relu", "grad_grads")
    vx, vw, vb, v_gamma, v_beta = _filled(given, list(differentiable))
    assert vx is not None and vw is not None
    grad = _grad(grad_output, v.normalized[0] if v.unbatched else v.normalized)
    grad = grad[np.newaxis] if v.unbatched else grad
    r, x_hat = batch_norm_parts(v.conv, running_mean, running_var, False, eps)
    h = np.where(v.normalized > 0, grad, 0.0)  # g m
    k = h * _per_channel(bn_weight) * r
    q = h * _per_channel(v_gamma, 0.0) * r
    vx_batched = vx[np.newaxis] if v.unbatched else vx
    knobs = (stride, padding, dilation, groups)
    dc = conv2d_jvp([vx_batched, vw, vb], v.input, weight, bias, *knobs)
    # the convolution planned once, each adjoint computed alone, where it is read
    w = as_float_array(weight, "weight")
    conv = Convolution(v.input.shape, w.shape, *knobs, dtype=np.float64)
    d_input = conv.grad_input(k, vw) + conv.grad_input(q, w)
    d_weight = conv.grad_weight(k, vx_batched) + conv.grad_weight(q, v.input)
    axes = (0, 2, 3)
    grad_grad_output = _output_tangent(v, dc, r, x_hat, bn_weight, v_gamma, v_beta)
    return (
        d_input[0] if v.unbatched else d_input,
        d_weight,
        None if bias is None else q.sum(axis=axes),
        None if bn_weight is None else (h * r * dc).sum(axis=axes),
        _zeros(bn_bias),
        grad_grad_output,
    )
