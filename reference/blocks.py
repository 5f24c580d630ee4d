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

import numpy as np

from reference._arguments import IntOrTuple, as_float_array, batched, check_bias, check_ndim
from reference.conv import check_grad_output, check_same_dtype, conv2d, conv2d_backward


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
    return tiles.reshape(batch * rows * cols, -1)


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
    tiles = tiles.transpose(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, -1)
    out = tiles @ weight.reshape(weight.shape[0], -1).T
    if bias is not None:
        out = out + bias
    out = out.reshape(x.shape[0], rows, cols, -1).transpose(0, 3, 1, 2)
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
    tiles = tiles.transpose(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, -1)
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
    input = as_float_array(input, "input")
    channels = input.shape[-3] if input.ndim >= 3 else 0
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
    input = as_float_array(input, "input")
    channels = input.shape[-3] if input.ndim >= 3 else 0
    hidden = conv2d(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
    grad_hidden, grad_pointwise, grad_pointwise_bias = conv2d_backward(
        grad_output, hidden, pointwise_weight, pointwise_bias
    )
    grad_input, grad_depthwise, grad_depthwise_bias = conv2d_backward(
        grad_hidden, input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels
    )
    return grad_input, grad_depthwise, grad_pointwise, grad_depthwise_bias, grad_pointwise_bias
