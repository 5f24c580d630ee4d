"""torch.nn.functional's convolutions and im2col written with TensorFlow's tf.nn ops.

Each function takes tf tensors in torch's layout (N, C, *spatial; an absent optional array
is None) and torch's keyword arguments, and returns tensors in torch's layout. TensorFlow's
CPU kernels take channels-last data (NWC, NHWC, NDHWC: Conv2D refuses NCHW on the CPU), so
every function transposes in and out (exact data movement), and weights go from torch's
(out, in/groups, *k) to TensorFlow's (*k, in/groups, out). This module imports only numpy
and tensorflow, so that a repro snippet can carry a function's source verbatim.

Where TensorFlow has no kernel or no spelling for a torch call, a function raises
``Inexpressible`` with the reason (the adapter reports the example unsupported): never an
approximation.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf


class Inexpressible(Exception):
    """TensorFlow cannot express this torch call exactly; the message says why."""


# torch's padding_mode -> what pads it: tf.pad's REFLECT excludes the edge as torch's does;
# replicate and circular have no tf.pad mode and are a tf.gather of the axis's indices
TF_PAD_MODES = {"reflect": "REFLECT"}
# CPU kernels without dilation for these dtypes ("CPU implementation of Conv3D currently only
# supports dilated rates of 1", "Current CPU implementations do not yet support dilation
# rates larger than 1"): only TensorFlow's oneDNN kernels (float32, bfloat16) dilate
NO_DILATION_DTYPES = ("float64", "float16")


def per_dim(value: Any, dims: int) -> list[int]:
    """An int or a sequence as one entry per spatial dimension (torch's _ntuple)."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    return [int(value)] * dims


def channels_last(x: tf.Tensor) -> tf.Tensor:
    """(N, C, *spatial) -> (N, *spatial, C)."""
    rank = len(x.shape)
    return tf.transpose(x, [0, *range(2, rank), 1])


def channels_first(x: tf.Tensor) -> tf.Tensor:
    """(N, *spatial, C) -> (N, C, *spatial)."""
    rank = len(x.shape)
    return tf.transpose(x, [0, rank - 1, *range(1, rank - 1)])


def conv_pads(padding: Any, kernel: list[int], dilation: list[int]) -> list[tuple[int, int]]:
    """(before, after) per spatial dim; 'same' puts the odd extra pad at the end (torch)."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(p, p) for p in per_dim(padding, len(kernel))]


def pad_spatial(x: tf.Tensor, pads: list[tuple[int, int]], mode: str = "zeros") -> tf.Tensor:
    """Pad the spatial dims of a channels-last x: zeros and reflect with tf.pad, replicate and
    circular (no tf.pad mode) by tf.gather of the padded axis's source indices, axis by axis
    as torch's F.pad."""
    if mode in ("zeros", "reflect"):
        paddings = [[0, 0], *([b, a] for b, a in pads), [0, 0]]
        return tf.pad(x, paddings, mode=TF_PAD_MODES.get(mode, "CONSTANT"))
    for axis, (before, after) in enumerate(pads, start=1):
        length = x.shape[axis]
        if mode == "circular":
            head, tail = list(range(length - before, length)), list(range(after))
        else:  # replicate
            head, tail = [0] * before, [length - 1] * after
        x = tf.gather(x, tf.constant([*head, *range(length), *tail], tf.int32), axis=axis)
    return x


def conv_filter(weight: tf.Tensor) -> tf.Tensor:
    """torch's (out, in/groups, *k) weight -> TensorFlow's (*k, in/groups, out) filter."""
    rank = len(weight.shape)
    return tf.transpose(weight, [*range(2, rank), 1, 0])


def conv(
    input: tf.Tensor,
    weight: tf.Tensor,
    bias: tf.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tf.Tensor:
    """F.conv{1,2,3}d (nn.ConvNd's padding_mode too) with tf.nn.conv1d / conv2d / conv3d.

    padding='same' is TensorFlow's 'SAME' (at stride 1 both put the odd extra pad at the
    end); numbers are tf.pad then 'VALID', as Keras's ZeroPadding layers do (conv1d and conv3d
    have no explicit padding, and Conv2D's explicit padding sends the second derivatives of a
    grouped or dilated float32 Conv2D to Eigen kernels that refuse both). groups: Conv2D's
    grouped convolution (filter depth in/groups; conv1d runs on it), tf.nn.depthwise_conv2d
    where groups equals the 2-d input's channels (depthwise_path), and one conv3d per group
    (tf.split, tf.concat) since Conv3D has no groups."""
    dims = len(weight.shape) - 2
    unbatched = len(input.shape) == dims + 1
    x = channels_last(input[None] if unbatched else input)
    kernel = list(weight.shape[2:])
    strides, dilations = per_dim(stride, dims), per_dim(dilation, dims)
    if max(dilations) > 1 and dims == 3 and input.dtype.name in NO_DILATION_DTYPES:
        raise Inexpressible(
            f"dilation in a {input.dtype.name} conv{dims}d: TensorFlow's CPU Conv3D kernel "
            "for this dtype has no dilation (only its oneDNN kernels, float32 and bfloat16)"
        )
    pads = conv_pads(padding, kernel, dilations)
    tf_padding: Any = "SAME" if padding == "same" else "VALID"
    if padding_mode != "zeros":
        x, tf_padding = pad_spatial(x, pads, padding_mode), "VALID"
    elif not isinstance(padding, str) and any(p for pair in pads for p in pair):
        x = pad_spatial(x, pads)
    channels = x.shape[-1]
    if depthwise_path(dims, groups, channels, strides, dilations):
        out = depthwise(x, weight, strides, dilations, tf_padding)
    elif dims == 3 and groups > 1:
        pieces = zip(tf.split(x, groups, axis=-1), tf.split(weight, groups, axis=0), strict=True)
        out = tf.concat(
            [
                tf.nn.conv3d(
                    piece,
                    conv_filter(w),
                    [1, *strides, 1],
                    tf_padding,
                    dilations=[1, *dilations, 1],
                )
                for piece, w in pieces
            ],
            axis=-1,
        )
    elif dims == 3:
        out = tf.nn.conv3d(
            x, conv_filter(weight), [1, *strides, 1], tf_padding, dilations=[1, *dilations, 1]
        )
    elif dims == 2:
        out = tf.nn.conv2d(x, conv_filter(weight), strides, tf_padding, dilations=dilations)
    else:
        out = tf.nn.conv1d(x, conv_filter(weight), strides, tf_padding, dilations=dilations)
    if bias is not None:
        out = tf.nn.bias_add(out, bias)
    out = channels_first(out)
    return out[0] if unbatched else out


def depthwise_path(
    dims: int, groups: int, channels: int, strides: list[int], dilations: list[int]
) -> bool:
    """Whether conv runs tf.nn.depthwise_conv2d: 2-d, groups = channels > 1, equal strides
    (DepthwiseConv2dNative: "Current implementation only supports equal length strides in
    the row and column dimensions"), and not both dilated and strided (depthwise_conv2d
    dilates by space-to-batch, which needs stride 1: given both it warns and returns another
    result). The grouped Conv2D runs the others."""
    both = max(dilations) > 1 and max(strides) > 1
    return dims == 2 and 1 < groups == channels and len(set(strides)) == 1 and not both


def depthwise(
    x: tf.Tensor, weight: tf.Tensor, strides: list[int], dilations: list[int], padding: str
) -> tf.Tensor:
    """tf.nn.depthwise_conv2d: torch's (C * m, 1, kh, kw) weight is (kh, kw, C, m) there."""
    channels = x.shape[-1]
    multiplier = weight.shape[0] // channels
    kh, kw = weight.shape[2:]
    tf_filter = tf.transpose(tf.reshape(weight, [channels, multiplier, kh, kw]), [2, 3, 0, 1])
    return tf.nn.depthwise_conv2d(x, tf_filter, [1, *strides, 1], padding, dilations=dilations)


def conv_transpose(
    input: tf.Tensor,
    weight: tf.Tensor,
    bias: tf.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> tf.Tensor:
    """F.conv_transpose{1,2,3}d with tf.nn.conv_transpose (Conv{2,3}DBackpropInput), one call
    per group (tf.split, tf.concat: the kernels have no groups).

    torch's output extent is O = (L-1)s - 2p + d(k-1) + output_padding + 1: the full 'VALID'
    transpose of extent (L-1)s + d(k-1) + 1 + output_padding (for output_padding < stride;
    else of extent (L-1)s + d(k-1) + 1, then output_padding zeros after), cropped by p on
    both sides. Not Conv2DBackpropInput's explicit padding: 1-d and 3-d have none, and with it
    a dilated float32 or bfloat16 transpose leaves oneDNN for an Eigen kernel without
    dilation. TensorFlow's filter is (*k, out/groups, in/groups)."""
    dims = len(weight.shape) - 2
    unbatched = len(input.shape) == dims + 1
    x = channels_last(input[None] if unbatched else input)
    kernel = list(weight.shape[2:])
    strides, dilations = per_dim(stride, dims), per_dim(dilation, dims)
    pads, extras = per_dim(padding, dims), per_dim(output_padding, dims)
    if max(dilations) > 1 and input.dtype.name in NO_DILATION_DTYPES:
        raise Inexpressible(
            f"dilation in a {input.dtype.name} conv_transpose{dims}d: TensorFlow's CPU "
            "Conv{2,3}DBackpropInput kernels for this dtype have no dilation (only its "
            "oneDNN kernels, float32 and bfloat16)"
        )
    out_per_group = weight.shape[1]
    batch, lengths = x.shape[0], list(x.shape[1:-1])
    full = [
        (n - 1) * s + d * (k - 1) + 1
        for n, s, d, k in zip(lengths, strides, dilations, kernel, strict=True)
    ]
    sizes = [f + (e if e < s else 0) for f, e, s in zip(full, extras, strides, strict=True)]
    shape = [batch, *sizes, out_per_group]
    pieces = zip(tf.split(x, groups, axis=-1), tf.split(weight, groups, axis=0), strict=True)
    out = tf.concat(
        [
            tf.nn.conv_transpose(
                piece, conv_filter(w), shape, strides, "VALID", dilations=dilations
            )
            for piece, w in pieces
        ],
        axis=-1,
    )
    late = [(0, e if e >= s else 0) for e, s in zip(extras, strides, strict=True)]
    if any(after for _, after in late):
        out = pad_spatial(out, late)
    crop = [slice(None)] + [slice(p, out.shape[1 + i] - p) for i, p in enumerate(pads)]
    out = out[tuple(crop)]
    if bias is not None:
        out = tf.nn.bias_add(out, bias)
    out = channels_first(out)
    return out[0] if unbatched else out


def unfold(
    input: tf.Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
) -> tf.Tensor:
    """F.unfold with tf.image.extract_patches on the zero-padded NHWC input: its patches are
    ordered (kh, kw, C), torch's columns (C, kh, kw), so (N, OH, OW, kh, kw, C) is transposed
    to (N, C, kh, kw, OH * OW)."""
    unbatched = len(input.shape) == 3
    x = channels_last(input[None] if unbatched else input)
    kh, kw = per_dim(kernel_size, 2)
    pads = [(p, p) for p in per_dim(padding, 2)]
    if any(p for p, _ in pads):
        x = pad_spatial(x, pads)
    patches = tf.image.extract_patches(
        x,
        sizes=[1, kh, kw, 1],
        strides=[1, *per_dim(stride, 2), 1],
        rates=[1, *per_dim(dilation, 2), 1],
        padding="VALID",
    )
    batch, rows, cols = patches.shape[:3]
    channels = x.shape[-1]
    blocks = tf.reshape(patches, [batch, rows * cols, kh, kw, channels])
    columns = tf.reshape(tf.transpose(blocks, [0, 4, 2, 3, 1]), [batch, -1, rows * cols])
    return columns[0] if unbatched else columns


def fold(
    input: tf.Tensor,
    output_size: Any,
    kernel_size: Any,
    dilation: Any = 1,
    padding: Any = 0,
    stride: Any = 1,
) -> tf.Tensor:
    """F.fold: the adjoint of unfold, as TensorFlow's gradient of tf.image.extract_patches
    (a GradientTape around unfold on zeros of the output's shape; overlapping blocks add up
    in its unsorted_segment_sum)."""
    unbatched = len(input.shape) == 2
    columns = input[None] if unbatched else input
    channels = columns.shape[1] // math.prod(per_dim(kernel_size, 2))
    image = tf.zeros([columns.shape[0], channels, *per_dim(output_size, 2)], columns.dtype)
    with tf.GradientTape() as tape:
        tape.watch(image)
        unfolded = unfold(image, kernel_size, dilation, padding, stride)
    out = tape.gradient(unfolded, image, output_gradients=columns)
    return out[0] if unbatched else out


def patch_embedding(
    input: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | None = None
) -> tf.Tensor:
    """ViT's patch embedding: a conv2d with stride = kernel = patch size."""
    return conv(input, weight, bias, stride=weight.shape[-1])


def depthwise_separable_conv(
    input: tf.Tensor,
    depthwise_weight: tf.Tensor,
    pointwise_weight: tf.Tensor,
    depthwise_bias: tf.Tensor | None = None,
    pointwise_bias: tf.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> tf.Tensor:
    """A depthwise conv2d (conv with groups = C) then a pointwise (1x1) one.

    The depthwise stage is conv's, except where conv would run a dilated Conv2D (one input
    channel, or dilated and strided) in float64 or float16: those Conv2Ds have no gradient
    (Eigen's Conv2DBackpropInput and Conv2DBackpropFilter have no dilation), so the stage is
    tf.nn.depthwise_conv2d there, as tf.nn.separable_conv2d runs it. depthwise_conv2d dilates
    only at stride 1 (by space-to-batch), so a strided one runs at stride 1 and keeps every
    stride-th output (position i of the strided convolution is position i * stride of the
    stride-1 one: the same sum)."""
    channels = input.shape[-3]
    strides, dilations = per_dim(stride, 2), per_dim(dilation, 2)
    if not (
        input.dtype.name in NO_DILATION_DTYPES
        and max(dilations) > 1
        and not depthwise_path(2, channels, channels, strides, dilations)
    ):
        hidden = conv(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
        return conv(hidden, pointwise_weight, pointwise_bias)
    unbatched = len(input.shape) == 3
    x = channels_last(input[None] if unbatched else input)
    pads = conv_pads(padding, list(depthwise_weight.shape[2:]), dilations)
    if any(p for pair in pads for p in pair):
        x = pad_spatial(x, pads)
    hidden = depthwise(x, depthwise_weight, [1, 1], dilations, "VALID")
    hidden = hidden[:, :: strides[0], :: strides[1]]
    if depthwise_bias is not None:
        hidden = tf.nn.bias_add(hidden, depthwise_bias)
    hidden = channels_first(hidden)
    return conv(hidden[0] if unbatched else hidden, pointwise_weight, pointwise_bias)
