"""torch.nn.functional's convolutions, im2col and normalization written with jax.lax and jnp.

Each function takes jax arrays (an absent optional array is None) and torch's keyword
arguments, and is traced by ``jax.jit`` with the arguments fixed (static). This module
imports only numpy and jax, so that a repro snippet can carry a function's source verbatim.

Precision: every convolution asks for ``lax.Precision.HIGHEST``. On the CPU it changes
nothing (XLA:CPU has one precision), but on TPU and GPU the default lets XLA round float32
operands to bfloat16 (or TF32), and the catalogue judges float32 as float32.
``preferred_element_type`` is left unset, as a user calling the op does: the result comes
back in the input dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# torch's padding_mode -> jnp.pad's mode (torch's reflect excludes the edge, as numpy's does)
PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def per_dim(value: Any, dims: int) -> tuple[int, ...]:
    """An int or a tuple as one entry per spatial dimension (torch's _ntuple)."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value),) * dims


def dimension_numbers(dims: int) -> tuple[str, str, str]:
    """torch's layouts: NC + spatial for data, OI + spatial for weights."""
    spatial = "DHW"[3 - dims :]
    return (f"NC{spatial}", f"OI{spatial}", f"NC{spatial}")


def conv_pads(
    padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]
) -> list[tuple[int, int]]:
    """(before, after) per spatial dim; 'same' puts the odd extra pad at the end (torch)."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(p, p) for p in per_dim(padding, len(kernel))]


def add_bias(out: jax.Array, bias: jax.Array | None, dims: int) -> jax.Array:
    """out + bias per channel; broadcast_in_dim insists that bias has out's channel count."""
    if bias is None:
        return out
    return out + lax.broadcast_in_dim(bias, out.shape, (1,))


def conv(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> jax.Array:
    """F.conv{1,2,3}d (nn.ConvNd's padding_mode too): lax.conv_general_dilated.

    Padding modes other than zeros pad first with jnp.pad (exact data movement), then
    convolve unpadded, as nn.ConvNd does with F.pad."""
    dims = weight.ndim - 2
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    dilations = per_dim(dilation, dims)
    pads = conv_pads(padding, tuple(weight.shape[2:]), dilations)
    if padding_mode != "zeros":
        x = jnp.pad(x, [(0, 0), (0, 0), *pads], mode=PAD_MODES[padding_mode])
        pads = [(0, 0)] * dims
    out = lax.conv_general_dilated(
        x,
        weight,
        window_strides=per_dim(stride, dims),
        padding=pads,
        rhs_dilation=dilations,
        dimension_numbers=dimension_numbers(dims),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    out = add_bias(out, bias, dims)
    return out[0] if unbatched else out


def conv_transpose(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> jax.Array:
    """F.conv_transpose{1,2,3}d as the gradient of a convolution, written forward:

        y = conv_general_dilated(x, flip(W'), strides 1, lhs_dilation=stride,
                                 padding (d(k-1) - p, d(k-1) - p + output_padding)),

    W' = torch's (C_in, C_out/g, *k) weight with in and out swapped within each group. The
    output size is (L-1)s + d(k-1) - 2p + output_padding + 1, torch's. (lax.conv_transpose
    has no feature_group_count, so it cannot express groups.)"""
    dims = weight.ndim - 2
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    in_channels, out_per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    per_group = weight.reshape(groups, in_channels // groups, out_per_group, *kernel)
    swapped = jnp.swapaxes(per_group, 1, 2).reshape(
        groups * out_per_group, in_channels // groups, *kernel
    )
    flipped = jnp.flip(swapped, axis=tuple(range(2, 2 + dims)))
    dilations = per_dim(dilation, dims)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + extra)
        for k, d, p, extra in zip(
            kernel,
            dilations,
            per_dim(padding, dims),
            per_dim(output_padding, dims),
            strict=True,
        )
    ]
    out = lax.conv_general_dilated(
        x,
        flipped,
        window_strides=(1,) * dims,
        padding=pads,
        lhs_dilation=per_dim(stride, dims),
        rhs_dilation=dilations,
        dimension_numbers=dimension_numbers(dims),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    out = add_bias(out, bias, dims)
    return out[0] if unbatched else out


def unfold(
    input: jax.Array, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
) -> jax.Array:
    """F.unfold: lax.conv_general_dilated_patches, whose output features are ordered
    channel-major then kernel position (torch's C * kh * kw), reshaped to (N, C*K, L)."""
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    patches = lax.conv_general_dilated_patches(
        x,
        filter_shape=per_dim(kernel_size, 2),
        window_strides=per_dim(stride, 2),
        padding=[(p, p) for p in per_dim(padding, 2)],
        rhs_dilation=per_dim(dilation, 2),
        dimension_numbers=dimension_numbers(2),
        precision=lax.Precision.HIGHEST,
    )
    columns = patches.reshape(*patches.shape[:2], -1)
    return columns[0] if unbatched else columns


def fold(
    input: jax.Array,
    output_size: Any,
    kernel_size: Any,
    dilation: Any = 1,
    padding: Any = 0,
    stride: Any = 1,
) -> jax.Array:
    """F.fold: the adjoint of unfold (overlapping blocks add up), as jax.vjp of unfold."""
    unbatched = input.ndim == 2
    columns = input[None] if unbatched else input
    channels = columns.shape[1] // int(np.prod(per_dim(kernel_size, 2)))
    image = jnp.zeros((columns.shape[0], channels, *per_dim(output_size, 2)), columns.dtype)
    _, pullback = jax.vjp(lambda x: unfold(x, kernel_size, dilation, padding, stride), image)
    (out,) = pullback(columns)
    return out[0] if unbatched else out


def batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """F.batch_norm with jnp: (output, new running_mean, new running_var).

    Training normalizes with the batch's biased variance (two-pass jnp.var) and moves the
    running statistics by momentum toward the mean and the unbiased variance (torch's rule);
    eval normalizes with the running statistics. y = (x - mean) / sqrt(var + eps) * w + b."""
    axes = (0, *range(2, input.ndim))
    shape = (1, input.shape[1], *([1] * (input.ndim - 2)))  # a wrong length cannot reshape
    if running_mean is not None:  # one per channel: a wrong length cannot reshape
        running_mean = running_mean.reshape(input.shape[1])
    if running_var is not None:
        running_var = running_var.reshape(input.shape[1])
    new_mean, new_var = running_mean, running_var
    if training:
        mean = jnp.mean(input, axis=axes)
        var = jnp.var(input, axis=axes)
        count = input.size // input.shape[1]
        if running_mean is not None:
            new_mean = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            new_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)
    else:
        mean, var = running_mean, running_var
    scale = lax.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    out = (input - mean.reshape(shape)) * scale.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, new_mean, new_var


def channel_statistics(input: jax.Array, correction: int = 1) -> tuple[jax.Array, jax.Array]:
    """torch.var_mean over every axis but the channels': (jnp.var with ddof, jnp.mean)."""
    axes = (0, *range(2, input.ndim))
    return jnp.var(input, axis=axes, ddof=correction), jnp.mean(input, axis=axes)


def patch_embedding(
    input: jax.Array, weight: jax.Array, bias: jax.Array | None = None
) -> jax.Array:
    """ViT's patch embedding: a conv2d with stride = kernel = patch size."""
    return conv(input, weight, bias, stride=weight.shape[-1])


def depthwise_separable_conv(
    input: jax.Array,
    depthwise_weight: jax.Array,
    pointwise_weight: jax.Array,
    depthwise_bias: jax.Array | None = None,
    pointwise_bias: jax.Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> jax.Array:
    """A depthwise conv2d (groups = C) then a pointwise (1x1) one."""
    channels = input.shape[-3]
    hidden = conv(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
    return conv(hidden, pointwise_weight, pointwise_bias)


def residual_block(
    input: jax.Array,
    conv1_weight: jax.Array,
    bn1_weight: jax.Array,
    bn1_bias: jax.Array,
    conv2_weight: jax.Array,
    bn2_weight: jax.Array,
    bn2_bias: jax.Array,
    shortcut_weight: jax.Array | None = None,
    shortcut_bn_weight: jax.Array | None = None,
    shortcut_bn_bias: jax.Array | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> jax.Array:
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), batch statistics (training)."""

    def norm(x: jax.Array, weight: jax.Array | None, bias: jax.Array | None) -> jax.Array:
        return batch_norm(x, None, None, weight, bias, True, 0.0, eps)[0]

    hidden = jax.nn.relu(norm(conv(input, conv1_weight, None, stride, 1), bn1_weight, bn1_bias))
    body = norm(conv(hidden, conv2_weight, None, 1, 1), bn2_weight, bn2_bias)
    skip = input
    if shortcut_weight is not None:
        skip = norm(
            conv(input, shortcut_weight, None, stride), shortcut_bn_weight, shortcut_bn_bias
        )
    return jax.nn.relu(body + skip)


def conv_transpose_conv(
    input: jax.Array,
    transpose_weight: jax.Array,
    conv_weight: jax.Array,
    transpose_bias: jax.Array | None = None,
    conv_bias: jax.Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    conv_padding: Any = 0,
) -> jax.Array:
    """The chain: conv_transpose, then a stride-1 conv of its output."""
    hidden = conv_transpose(
        input, transpose_weight, transpose_bias, stride, padding, output_padding, 1, dilation
    )
    return conv(hidden, conv_weight, conv_bias, 1, conv_padding)
