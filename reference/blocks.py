"""Blocks built from the ops: patch embedding and depthwise-separable convolution.

patch_embedding (Dosovitskiy et al. 2021, ViT): cut the image into non-overlapping
patch x patch tiles (a right or bottom remainder is dropped, as a stride-patch convolution
drops it), flatten each tile channel-major, and project: a matrix product

    y[n, e, i, j] = bias[e] + sum_{c, a, b} W[e, c, a, b] * x[n, c, i*P + a, j*P + b],

the same numbers as conv2d(x, W, bias, stride=P), computed by reshape and matmul instead.
depthwise_separable_conv (Chollet 2017): a depthwise convolution (groups = in_channels,
out_channels = in_channels * multiplier) followed by a pointwise (1x1) one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._arguments import (
    IntOrTuple,
    as_float_array,
    batched,
    check_bias,
    check_ndim,
    ntuple,
    positive,
    real,
)
from reference.conv import check_grad_output, check_same_dtype, conv2d, conv2d_backward
from reference.normalization import batch_norm, batch_norm_backward


def _patches(
    input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None
) -> tuple[np.ndarray, bool, int, int, int]:
    input = as_float_array(input, "input")
    weight = as_float_array(weight, "weight")
    x, unbatched = batched(input, 2, "patch_embedding")
    check_ndim(weight, "weight", (4,), "patch_embedding takes (embed_dim, C, P, P)")
    embed, channels, patch, other = weight.shape
    if patch != other or patch < 1:
        raise ValueError(
            f"weight must have square patches (embed_dim, C, P, P), got {weight.shape}"
        )
    if x.shape[1] != channels:
        raise ValueError(f"input has {x.shape[1]} channels, weight expects {channels}")
    check_bias(bias, embed)
    check_same_dtype(input, weight=weight, bias=bias)
    rows, cols = x.shape[2] // patch, x.shape[3] // patch
    if rows == 0 or cols == 0:
        raise ValueError(f"input's spatial size {x.shape[2:]} is smaller than the patch {patch}")
    return x, unbatched, rows, cols, patch


def _tiles(x: np.ndarray, rows: int, cols: int, patch: int) -> np.ndarray:
    """(N * rows * cols, C * P * P): each tile flattened channel-major, row-major tiles."""
    batch, channels = x.shape[:2]
    cut = x[:, :, : rows * patch, : cols * patch]
    tiles = cut.reshape(batch, channels, rows, patch, cols, patch).transpose(0, 2, 4, 1, 3, 5)
    return tiles.reshape(batch * rows * cols, channels * patch * patch)


def patch_embedding(
    input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray:
    """(N, C, H, W) -> (N, embed_dim, H // P, W // P) by reshape and matmul; weight is
    (embed_dim, C, P, P) as for the equivalent conv2d."""
    x, unbatched, rows, cols, patch = _patches(input, weight, bias)
    batch, channels = x.shape[:2]
    tiles = x[:, :, : rows * patch, : cols * patch].reshape(
        batch, channels, rows, patch, cols, patch
    )
    tiles = tiles.transpose(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, channels * patch**2)
    out = tiles @ weight.reshape(weight.shape[0], -1).T
    if bias is not None:
        out = out + bias
    out = out.reshape(x.shape[0], rows, cols, weight.shape[0]).transpose(0, 3, 1, 2)
    out = np.ascontiguousarray(out)
    return out[0] if unbatched else out


def patch_embedding_backward(
    grad_output: np.ndarray, input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(grad_input, grad_weight, grad_bias): the matrix product's adjoints; the dropped
    remainder of the image gets no gradient."""
    x, unbatched, rows, cols, patch = _patches(input, weight, bias)
    batch, channels = x.shape[:2]
    embed = weight.shape[0]
    grad = check_grad_output(grad_output, (batch, embed, rows, cols), unbatched, x.dtype)
    grad_rows = grad.transpose(0, 2, 3, 1).reshape(-1, embed)
    tiles = x[:, :, : rows * patch, : cols * patch].reshape(
        batch, channels, rows, patch, cols, patch
    )
    tiles = tiles.transpose(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, channels * patch**2)
    grad_weight = (grad_rows.T @ tiles).reshape(weight.shape)
    grad_tiles = (grad_rows @ weight.reshape(embed, -1)).reshape(
        batch, rows, cols, channels, patch, patch
    )
    grad_input = np.zeros_like(x)
    grad_input[:, :, : rows * patch, : cols * patch] = grad_tiles.transpose(
        0, 3, 1, 4, 2, 5
    ).reshape(batch, channels, rows * patch, cols * patch)
    grad_bias = None if bias is None else grad.sum(axis=(0, 2, 3))
    return (grad_input[0] if unbatched else grad_input), grad_weight, grad_bias


def _check_separable(
    input: object,
    depthwise_weight: object,
    pointwise_weight: object,
    depthwise_bias: object,
    pointwise_bias: object,
) -> int:
    """Validate the arrays under their own names (the inner conv2d would call each one
    ``weight`` or ``bias``); return the input's channels, the depthwise groups."""
    x = as_float_array(input, "input")
    check_ndim(x, "input", (3, 4), "depthwise_separable_conv takes (C, H, W) or (N, C, H, W)")
    channels = x.shape[-3]
    depthwise = as_float_array(depthwise_weight, "depthwise_weight")
    check_ndim(depthwise, "depthwise_weight", (4,), "(C * multiplier, 1, kh, kw)")
    hidden = depthwise.shape[0]
    if depthwise.shape[1] != 1 or channels == 0 or hidden % channels:
        raise ValueError(
            f"depthwise_weight must be (C * multiplier, 1, kh, kw) for the input's C={channels} "
            f"channels, got shape {depthwise.shape}"
        )
    pointwise = as_float_array(pointwise_weight, "pointwise_weight")
    check_ndim(pointwise, "pointwise_weight", (4,), "(out, C * multiplier, 1, 1)")
    if pointwise.shape[1:] != (hidden, 1, 1):
        raise ValueError(
            f"pointwise_weight must be (out, {hidden}, 1, 1) after a depthwise_weight of shape "
            f"{depthwise.shape}, got shape {pointwise.shape}"
        )
    dw_bias = check_bias(depthwise_bias, hidden, "depthwise_bias")
    pw_bias = check_bias(pointwise_bias, pointwise.shape[0], "pointwise_bias")
    check_same_dtype(
        x,
        depthwise_weight=depthwise,
        pointwise_weight=pointwise,
        depthwise_bias=dw_bias,
        pointwise_bias=pw_bias,
    )
    return channels


def depthwise_separable_conv(
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """conv2d(conv2d(x, depthwise_weight, groups=C, ...), pointwise_weight); depthwise_weight
    is (C * multiplier, 1, kh, kw), pointwise_weight (out, C * multiplier, 1, 1)."""
    channels = _check_separable(
        input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias
    )
    hidden = conv2d(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
    return conv2d(hidden, pointwise_weight, pointwise_bias)


def depthwise_separable_conv_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of (input, depthwise_weight, pointwise_weight, depthwise_bias,
    pointwise_bias): the chain rule through the two convolutions' own backwards."""
    channels = _check_separable(
        input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias
    )
    hidden = conv2d(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
    grad_hidden, grad_pointwise, grad_pointwise_bias = conv2d_backward(
        grad_output, hidden, pointwise_weight, pointwise_bias
    )
    grad_input, grad_depthwise, grad_depthwise_bias = conv2d_backward(
        grad_hidden, input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels
    )
    return grad_input, grad_depthwise, grad_pointwise, grad_depthwise_bias, grad_pointwise_bias


def _train_norm(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> np.ndarray:
    return batch_norm(x, None, None, weight, bias, True, 0.0, eps)


@dataclass(frozen=True)
class _ResidualPass:
    """The forward values of a residual block that its backward needs."""

    a1: np.ndarray  # conv1(x)
    b1: np.ndarray  # bn1(a1)
    hidden: np.ndarray  # relu(b1)
    a2: np.ndarray  # conv2(hidden)
    body: np.ndarray  # bn2(a2)
    a_s: np.ndarray | None  # the projection's conv1x1(x), None for the identity
    skip: np.ndarray  # x, or bn(a_s)


def _check_residual(
    input: object,
    conv1_weight: object,
    bn1_weight: object,
    bn1_bias: object,
    conv2_weight: object,
    bn2_weight: object,
    bn2_bias: object,
    shortcut_weight: object,
    shortcut_bn_weight: object,
    shortcut_bn_bias: object,
    stride: object,
    eps: object,
) -> np.ndarray:
    """Validate every argument under its own name (the inner ops would call each one
    ``weight`` or ``bias``): shapes that chain, one dtype, a shortcut that matches the body.
    A wrong kernel size would not fail inside: the body and the shortcut would broadcast."""
    x = as_float_array(input, "input")
    check_ndim(x, "input", (4,), "residual_block takes (N, C, H, W): batch norm needs a batch")
    channels = x.shape[1]
    conv1 = as_float_array(conv1_weight, "conv1_weight")
    check_ndim(conv1, "conv1_weight", (4,), "(out, C, 3, 3)")
    out = conv1.shape[0]
    if conv1.shape[1:] != (channels, 3, 3):
        raise ValueError(
            f"conv1_weight must be (out, {channels}, 3, 3) for an input of {channels} channels, "
            f"got shape {conv1.shape}"
        )
    conv2 = as_float_array(conv2_weight, "conv2_weight")
    if conv2.shape != (out, out, 3, 3):
        raise ValueError(f"conv2_weight must have shape {(out, out, 3, 3)}, got {conv2.shape}")
    arrays: dict[str, np.ndarray | None] = {"conv1_weight": conv1, "conv2_weight": conv2}
    for name, vector in (
        ("bn1_weight", bn1_weight),
        ("bn1_bias", bn1_bias),
        ("bn2_weight", bn2_weight),
        ("bn2_bias", bn2_bias),
    ):
        if vector is None:
            raise TypeError(f"{name} must be a numpy.ndarray, got None")
        arrays[name] = check_bias(vector, out, name)
    strides = positive(ntuple(stride, "stride", 2, broadcast=True), "stride")
    if shortcut_weight is None:
        for name, given in (
            ("shortcut_bn_weight", shortcut_bn_weight),
            ("shortcut_bn_bias", shortcut_bn_bias),
        ):
            if given is not None:
                raise ValueError(f"{name} is given without shortcut_weight: it would be ignored")
        if strides != (1, 1) or out != channels:
            raise ValueError(
                f"an identity shortcut (shortcut_weight None) needs stride 1 and out_channels = "
                f"in_channels, got stride={stride!r} and conv1_weight of shape {conv1.shape}"
            )
    else:
        projection = as_float_array(shortcut_weight, "shortcut_weight")
        if projection.shape != (out, channels, 1, 1):
            raise ValueError(
                f"shortcut_weight must have shape {(out, channels, 1, 1)}, got {projection.shape}"
            )
        arrays["shortcut_weight"] = projection
        for name, vector in (
            ("shortcut_bn_weight", shortcut_bn_weight),
            ("shortcut_bn_bias", shortcut_bn_bias),
        ):
            if vector is None:
                raise ValueError(f"a projection shortcut needs {name}, got None")
            arrays[name] = check_bias(vector, out, name)
    check_same_dtype(x, **arrays)
    if not real(eps, "eps") >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return x


def _residual_forward(
    input: np.ndarray,
    conv1_weight: np.ndarray,
    bn1_weight: np.ndarray,
    bn1_bias: np.ndarray,
    conv2_weight: np.ndarray,
    bn2_weight: np.ndarray,
    bn2_bias: np.ndarray,
    shortcut_weight: np.ndarray | None,
    shortcut_bn_weight: np.ndarray | None,
    shortcut_bn_bias: np.ndarray | None,
    stride: int,
    eps: float,
) -> _ResidualPass:
    input = _check_residual(
        input,
        conv1_weight,
        bn1_weight,
        bn1_bias,
        conv2_weight,
        bn2_weight,
        bn2_bias,
        shortcut_weight,
        shortcut_bn_weight,
        shortcut_bn_bias,
        stride,
        eps,
    )
    a1 = conv2d(input, conv1_weight, None, stride, 1)
    b1 = _train_norm(a1, bn1_weight, bn1_bias, eps)
    hidden = np.maximum(b1, 0.0)
    a2 = conv2d(hidden, conv2_weight, None, 1, 1)
    body = _train_norm(a2, bn2_weight, bn2_bias, eps)
    if shortcut_weight is None:
        return _ResidualPass(a1, b1, hidden, a2, body, None, input)
    a_s = conv2d(input, shortcut_weight, None, stride)
    skip = _train_norm(a_s, shortcut_bn_weight, shortcut_bn_bias, eps)
    return _ResidualPass(a1, b1, hidden, a2, body, a_s, skip)


def residual_block(
    input: np.ndarray,
    conv1_weight: np.ndarray,
    bn1_weight: np.ndarray,
    bn1_bias: np.ndarray,
    conv2_weight: np.ndarray,
    bn2_weight: np.ndarray,
    bn2_bias: np.ndarray,
    shortcut_weight: np.ndarray | None = None,
    shortcut_bn_weight: np.ndarray | None = None,
    shortcut_bn_bias: np.ndarray | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> np.ndarray:
    """ResNet's basic block (He et al. 2016), batch norm on batch statistics (training):

        y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),

    conv1 3x3 with stride, conv2 3x3, both padding 1 and no bias; the shortcut is the
    identity, or bn(conv1x1(x, stride)) when shortcut_weight is given."""
    values = _residual_forward(
        input,
        conv1_weight,
        bn1_weight,
        bn1_bias,
        conv2_weight,
        bn2_weight,
        bn2_bias,
        shortcut_weight,
        shortcut_bn_weight,
        shortcut_bn_bias,
        stride,
        eps,
    )
    return np.maximum(values.body + values.skip, 0.0)


def residual_block_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    conv1_weight: np.ndarray,
    bn1_weight: np.ndarray,
    bn1_bias: np.ndarray,
    conv2_weight: np.ndarray,
    bn2_weight: np.ndarray,
    bn2_bias: np.ndarray,
    shortcut_weight: np.ndarray | None = None,
    shortcut_bn_weight: np.ndarray | None = None,
    shortcut_bn_bias: np.ndarray | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> tuple[np.ndarray | None, ...]:
    """Gradients of every array argument, in order (None for an absent shortcut): the chain
    rule through each op's own backward; ReLU passes the gradient where its input is > 0."""
    v = _residual_forward(
        input,
        conv1_weight,
        bn1_weight,
        bn1_bias,
        conv2_weight,
        bn2_weight,
        bn2_bias,
        shortcut_weight,
        shortcut_bn_weight,
        shortcut_bn_bias,
        stride,
        eps,
    )
    output_shape = v.body.shape
    grad = check_grad_output(grad_output, output_shape, False, v.body.dtype)
    grad_z = np.where(v.body + v.skip > 0, grad, 0.0)
    g_a2, g_bn2_w, g_bn2_b = batch_norm_backward(
        grad_z, v.a2, None, None, bn2_weight, bn2_bias, True, 0.0, eps
    )
    g_hidden, g_conv2, _ = conv2d_backward(g_a2, v.hidden, conv2_weight, None, 1, 1)
    g_a1, g_bn1_w, g_bn1_b = batch_norm_backward(
        np.where(v.b1 > 0, g_hidden, 0.0), v.a1, None, None, bn1_weight, bn1_bias, True, 0.0, eps
    )
    g_input, g_conv1, _ = conv2d_backward(g_a1, input, conv1_weight, None, stride, 1)
    if v.a_s is None:
        return (
            g_input + grad_z,
            g_conv1,
            g_bn1_w,
            g_bn1_b,
            g_conv2,
            g_bn2_w,
            g_bn2_b,
            None,
            None,
            None,
        )
    assert shortcut_weight is not None
    g_as, g_short_w, g_short_b = batch_norm_backward(
        grad_z, v.a_s, None, None, shortcut_bn_weight, shortcut_bn_bias, True, 0.0, eps
    )
    g_skip, g_short, _ = conv2d_backward(g_as, input, shortcut_weight, None, stride)
    return (
        g_input + g_skip,
        g_conv1,
        g_bn1_w,
        g_bn1_b,
        g_conv2,
        g_bn2_w,
        g_bn2_b,
        g_short,
        g_short_w,
        g_short_b,
    )
