"""Fusion chains: the op sequences that compilers and inference engines fuse into one kernel.

conv_bn_relu is a 2-d convolution, batch norm on running statistics (eval mode) and ReLU,

    c = conv2d(x, W, b, stride, padding, dilation, groups)
    z = (c - running_mean) / sqrt(running_var + eps) * bn_weight + bn_bias
    y = max(z, 0),

the chain an engine folds into the convolution (W' = W * bn_weight / sqrt(running_var +
eps), b' = (b - running_mean) * bn_weight / sqrt(running_var + eps) + bn_bias) and ends with
a fused ReLU. The reference composes its own conv2d and batch_norm; the running statistics
are constants, not differentiated (torch keeps them as buffers).

conv_max_pool is a 2-d convolution and a 2-d max pooling of its output,

    c = conv2d(x, W, b, stride, padding, dilation, groups)
    y = max_pool2d(c, pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode),

the stem of most classification networks (ResNet's 7x7 convolution, its batch norm and ReLU
aside, then a 3x3 max pool of stride 2), which a compiler may compute in one kernel. Its
gradient passes grad_output to each window's maximum (max_pool2d_backward: the first maximum,
a NaN winning), then through conv2d_backward.

conv_transpose_conv is a 2-d transposed convolution (the upsampling of a decoder or a
segmentation head) and a stride-1 convolution of its output,

    h = conv_transpose2d(x, transpose_weight, transpose_bias, stride, padding, output_padding,
                         1, dilation)
    y = conv2d(h, conv_weight, conv_bias, 1, conv_padding),

which a compiler may schedule as one loop nest. Both are dense (groups 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._arguments import (
    IntOrTuple,
    as_float_array,
    check_bias,
    check_ndim,
    non_negative,
    ntuple,
    real,
)
from reference.conv import (
    check_grad_output,
    check_same_dtype,
    conv2d,
    conv2d_backward,
    conv_output_shape,
)
from reference.conv_transpose import conv_transpose2d, conv_transpose2d_backward
from reference.normalization import batch_norm, batch_norm_backward
from reference.pool import PoolKnobs, max_pool2d, max_pool2d_backward, pool_knobs


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


def _conv_of_chain(input: object, weight: object, bias: object) -> tuple[np.ndarray, bool]:
    """The chain's input batched and whether a batch axis was added, after the checks that
    name the chain (conv2d checks the rest under the same names)."""
    x = as_float_array(input, "input")
    check_ndim(x, "input", (3, 4), "conv_max_pool takes (C, H, W) or (N, C, H, W)")
    w = as_float_array(weight, "weight")
    check_ndim(w, "weight", (4,), "conv_max_pool takes (out, in/groups, kh, kw)")
    check_same_dtype(x, weight=w, bias=check_bias(bias, w.shape[0], "bias"))
    unbatched = x.ndim == 3
    return (x[np.newaxis] if unbatched else x), unbatched


def _pooled(c: np.ndarray, knobs: PoolKnobs) -> np.ndarray:
    """max_pool2d of the convolution's output; a window larger than it is named as such."""
    try:
        out = max_pool2d(c, *knobs)
    except ValueError as error:  # the pool's output size: the only check left to it
        raise ValueError(
            f"the convolution's output {c.shape} is too small to pool: {error}"
        ) from error
    assert isinstance(out, np.ndarray)
    return out


def conv_max_pool(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    pool_kernel_size: IntOrTuple = 2,
    pool_stride: IntOrTuple | None = None,
    pool_padding: IntOrTuple = 0,
    pool_dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """max_pool2d(conv2d(x, W, b, stride, padding, dilation, groups), pool_kernel_size,
    pool_stride, pool_padding, pool_dilation, ceil_mode); (C, H, W) or (N, C, H, W) input.
    pool_stride None means pool_kernel_size, as max_pool2d's stride."""
    x, unbatched = _conv_of_chain(input, weight, bias)
    knobs = pool_knobs(
        2, pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, prefix="pool_"
    )
    out = _pooled(conv2d(x, weight, bias, stride, padding, dilation, groups), knobs)
    return out[0] if unbatched else out


def conv_max_pool_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    pool_kernel_size: IntOrTuple = 2,
    pool_stride: IntOrTuple | None = None,
    pool_padding: IntOrTuple = 0,
    pool_dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of (input, weight, bias), None for an absent bias: max_pool2d_backward
    routes grad_output to each window's maximum of c (overlapping windows add up), and
    conv2d_backward carries that to the input, weight and bias."""
    x, unbatched = _conv_of_chain(input, weight, bias)
    knobs = pool_knobs(
        2, pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, prefix="pool_"
    )
    c = conv2d(x, weight, bias, stride, padding, dilation, groups)
    grad = check_grad_output(grad_output, _pooled(c, knobs).shape, unbatched, x.dtype)
    (grad_conv,) = max_pool2d_backward(grad, c, *knobs)
    grad_input, grad_weight, grad_bias = conv2d_backward(
        grad_conv, x, weight, bias, stride, padding, dilation, groups
    )
    return (grad_input[0] if unbatched else grad_input), grad_weight, grad_bias


def _check_transpose_conv(
    input: object,
    transpose_weight: object,
    conv_weight: object,
    transpose_bias: object,
    conv_bias: object,
    conv_padding: object,
) -> tuple[np.ndarray, bool]:
    """The chain's arrays under their own names (the inner ops would call both weights
    ``weight``): 4-d weights, the transposed convolution's output channels the convolution's
    input channels, biases of their weights' lengths, one dtype; conv_padding 'same', 'valid'
    or non-negative ints. Returns the input batched and whether a batch axis was added."""
    x = as_float_array(input, "input")
    check_ndim(x, "input", (3, 4), "conv_transpose_conv takes (C, H, W) or (N, C, H, W)")
    up = as_float_array(transpose_weight, "transpose_weight")
    check_ndim(up, "transpose_weight", (4,), "conv_transpose_conv takes (in, mid, kh, kw)")
    down = as_float_array(conv_weight, "conv_weight")
    check_ndim(down, "conv_weight", (4,), "conv_transpose_conv takes (out, mid, kh, kw)")
    if x.shape[-3] != up.shape[0]:
        raise ValueError(
            f"input has {x.shape[-3]} channels, but transpose_weight of shape {up.shape} "
            f"expects {up.shape[0]}"
        )
    if down.shape[1] != up.shape[1]:
        raise ValueError(
            f"conv_weight of shape {down.shape} expects {down.shape[1]} channels, but "
            f"transpose_weight of shape {up.shape} makes {up.shape[1]}"
        )
    check_same_dtype(
        x,
        transpose_weight=up,
        conv_weight=down,
        transpose_bias=check_bias(transpose_bias, up.shape[1], "transpose_bias"),
        conv_bias=check_bias(conv_bias, down.shape[0], "conv_bias"),
    )
    if not (isinstance(conv_padding, str) and conv_padding in ("same", "valid")):
        if isinstance(conv_padding, str):
            raise ValueError(f"conv_padding must be 'same', 'valid' or ints, got {conv_padding!r}")
        non_negative(ntuple(conv_padding, "conv_padding", 2, True), "conv_padding")
    unbatched = x.ndim == 3
    return (x[np.newaxis] if unbatched else x), unbatched


def _upsampled(
    x: np.ndarray,
    transpose_weight: np.ndarray,
    transpose_bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
    conv_weight: np.ndarray,
    conv_padding: IntOrTuple | str,
) -> np.ndarray:
    """h = conv_transpose2d(x, ...), checked to be large enough for the convolution after it."""
    h = conv_transpose2d(
        x, transpose_weight, transpose_bias, stride, padding, output_padding, 1, dilation
    )
    pads = (
        (0, 0) if isinstance(conv_padding, str) else ntuple(conv_padding, "conv_padding", 2, True)
    )
    for size, k, p in zip(h.shape[2:], np.shape(conv_weight)[2:], pads, strict=True):
        if conv_padding != "same" and k > size + 2 * p:
            raise ValueError(
                f"conv_weight's kernel {tuple(np.shape(conv_weight)[2:])} is larger than the "
                f"transposed convolution's output {h.shape[2:]} padded by conv_padding {pads}"
            )
    return h


def conv_transpose_conv(
    input: np.ndarray,
    transpose_weight: np.ndarray,
    conv_weight: np.ndarray,
    transpose_bias: np.ndarray | None = None,
    conv_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    conv_padding: IntOrTuple | str = 0,
) -> np.ndarray:
    """conv2d(conv_transpose2d(x, transpose_weight, transpose_bias, stride, padding,
    output_padding, 1, dilation), conv_weight, conv_bias, padding=conv_padding): a decoder's
    upsampling and the convolution after it (stride 1, both dense); (C, H, W) or (N, C, H, W)."""
    x, unbatched = _check_transpose_conv(
        input, transpose_weight, conv_weight, transpose_bias, conv_bias, conv_padding
    )
    h = _upsampled(
        x, transpose_weight, transpose_bias, stride, padding, output_padding, dilation,
        conv_weight, conv_padding,
    )  # fmt: skip
    out = conv2d(h, conv_weight, conv_bias, 1, conv_padding)
    return out[0] if unbatched else out


def conv_transpose_conv_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    transpose_weight: np.ndarray,
    conv_weight: np.ndarray,
    transpose_bias: np.ndarray | None = None,
    conv_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    conv_padding: IntOrTuple | str = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of (input, transpose_weight, conv_weight, transpose_bias, conv_bias), None
    for an absent bias: conv2d_backward takes grad_output to h, its weight and bias;
    conv_transpose2d_backward takes grad_h on."""
    x, unbatched = _check_transpose_conv(
        input, transpose_weight, conv_weight, transpose_bias, conv_bias, conv_padding
    )
    h = _upsampled(
        x, transpose_weight, transpose_bias, stride, padding, output_padding, dilation,
        conv_weight, conv_padding,
    )  # fmt: skip
    out_shape = conv_output_shape(2, h, conv_weight, conv_bias, 1, conv_padding)
    grad = check_grad_output(grad_output, out_shape, unbatched, x.dtype)
    grad_h, grad_conv_weight, grad_conv_bias = conv2d_backward(
        grad, h, conv_weight, conv_bias, 1, conv_padding
    )
    grad_input, grad_transpose_weight, grad_transpose_bias = conv_transpose2d_backward(
        grad_h, x, transpose_weight, transpose_bias, stride, padding, output_padding, 1, dilation
    )
    return (
        grad_input[0] if unbatched else grad_input,
        grad_transpose_weight,
        grad_conv_weight,
        grad_transpose_bias,
        grad_conv_bias,
    )
