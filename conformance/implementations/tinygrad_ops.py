"""torch.nn.functional's convolutions, pooling and batch norm written with tinygrad's Tensor.

Each function takes tinygrad Tensors (an absent optional array is None) and torch's keyword
arguments and returns Tensors. tinygrad's own ops do the work: ``Tensor.conv2d`` (any number
of spatial dims), ``Tensor.conv_transpose2d``, ``Tensor.max_pool2d``/``avg_pool2d`` (n-d),
``Tensor.pad``, ``nn.BatchNorm``, ``Tensor.var``/``mean``. This module imports only numpy
and tinygrad, so that a repro snippet can carry a function's source verbatim.

Padding: tinygrad's flat form lists (before, after) per spatial dim from the LAST dim to the
first, (left, right, top, bottom, ...), as F.pad does; ``flat_pads`` writes torch's per-dim
pairs in that order.
"""

from __future__ import annotations

from typing import Any

from tinygrad import Tensor, nn
from tinygrad.helpers import Context


def per_dim(value: Any, dims: int) -> tuple[int, ...]:
    """An int or a tuple as one entry per spatial dimension (torch's _ntuple)."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value),) * dims


def flat_pads(pairs: Any) -> tuple[int, ...]:
    """torch's (before, after) per spatial dim, first dim first, as tinygrad's flat padding
    (last dim first)."""
    return tuple(int(p) for pair in reversed(list(pairs)) for p in pair)


def conv_pairs(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> list[Any]:
    """(before, after) per spatial dim; 'same' puts the odd extra pad at the end (torch)."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(p, p) for p in per_dim(padding, len(kernel))]


def conv(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    """F.conv{1,2,3}d (nn.ConvNd's padding_mode too): Tensor.conv2d, which takes any number
    of spatial dims. Padding modes other than zeros pad first with Tensor.pad (its 'reflect'
    excludes the edge, as torch's does), then convolve unpadded, as nn.ConvNd does."""
    dims = weight.ndim - 2
    unbatched = input.ndim == dims + 1
    x = input.unsqueeze(0) if unbatched else input
    dilations = per_dim(dilation, dims)
    pairs = conv_pairs(padding, tuple(weight.shape[2:]), dilations)
    if padding_mode != "zeros":
        x = x.pad(((0, 0), (0, 0), *pairs), mode=padding_mode)
        pairs = [(0, 0)] * dims
    out = x.conv2d(
        weight,
        bias,
        groups=groups,
        stride=per_dim(stride, dims),
        dilation=dilations,
        padding=flat_pads(pairs),
    )
    return out.squeeze(0) if unbatched else out


def conv_transpose(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """F.conv_transpose{1,2,3}d: Tensor.conv_transpose2d (any number of spatial dims)."""
    dims = weight.ndim - 2
    unbatched = input.ndim == dims + 1
    x = input.unsqueeze(0) if unbatched else input
    out = x.conv_transpose2d(
        weight,
        bias,
        groups=groups,
        stride=per_dim(stride, dims),
        dilation=per_dim(dilation, dims),
        padding=flat_pads((p, p) for p in per_dim(padding, dims)),
        output_padding=per_dim(output_padding, dims),
    )
    return out.squeeze(0) if unbatched else out


def max_pool(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    dims: int,
) -> Any:
    """F.max_pool{dims}d: Tensor.max_pool2d (n-d). Its indices are flat over each (n, c)
    plane, as torch's are (tinygrad's dtype: int32)."""
    unbatched = input.ndim == dims + 1
    x = input.unsqueeze(0) if unbatched else input
    kernel = per_dim(kernel_size, dims)
    out = x.max_pool2d(
        kernel,
        kernel if stride is None else per_dim(stride, dims),
        dilation=per_dim(dilation, dims),
        padding=flat_pads((p, p) for p in per_dim(padding, dims)),
        ceil_mode=ceil_mode,
        return_indices=return_indices,
    )
    outputs = out if isinstance(out, tuple) else (out,)
    if unbatched:
        outputs = tuple(o.squeeze(0) for o in outputs)
    return outputs if return_indices else outputs[0]


def avg_pool(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    dims: int,
) -> Tensor:
    """F.avg_pool{dims}d: Tensor.avg_pool2d (n-d). tinygrad has no divisor_override (the
    adapter declares it unsupported)."""
    unbatched = input.ndim == dims + 1
    x = input.unsqueeze(0) if unbatched else input
    kernel = per_dim(kernel_size, dims)
    out = x.avg_pool2d(
        kernel,
        kernel if stride is None else per_dim(stride, dims),
        dilation=1,
        padding=flat_pads((p, p) for p in per_dim(padding, dims)),
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    return out.squeeze(0) if unbatched else out


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """F.batch_norm with tinygrad's nn.BatchNorm: (output, new running_mean, new running_var).

    Training (Context(TRAINING=1)) normalizes with the batch's biased variance and moves the
    running statistics by momentum toward the mean and the unbiased variance
    (n / (n - 1) times the biased one); eval normalizes with the running statistics."""
    track = running_mean is not None
    norm = nn.BatchNorm(
        input.shape[1], eps=eps, affine=True, track_running_stats=track, momentum=momentum
    )
    norm.weight, norm.bias = weight, bias
    if track:
        norm.running_mean, norm.running_var = running_mean, running_var
    with Context(TRAINING=int(training)):
        out = norm(input)
    if not track:
        return out, None, None
    return out, norm.running_mean, norm.running_var


def channel_statistics(input: Tensor, correction: int = 1) -> tuple[Tensor, Tensor]:
    """torch.var_mean over every axis but the channels': (Tensor.var, Tensor.mean)."""
    axes = (0, *range(2, input.ndim))
    return input.var(axes, correction=correction), input.mean(axes)


def patch_embedding(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """ViT's patch embedding: a conv2d with stride = kernel = patch size."""
    return conv(input, weight, bias, stride=weight.shape[-1])


def depthwise_separable_conv(
    input: Tensor,
    depthwise_weight: Tensor,
    pointwise_weight: Tensor,
    depthwise_bias: Tensor | None = None,
    pointwise_bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Tensor:
    """A depthwise conv2d (groups = C) then a pointwise (1x1) one."""
    channels = input.shape[-3]
    hidden = conv(input, depthwise_weight, depthwise_bias, stride, padding, dilation, channels)
    return conv(hidden, pointwise_weight, pointwise_bias)


def residual_block(
    input: Tensor,
    conv1_weight: Tensor,
    bn1_weight: Tensor,
    bn1_bias: Tensor,
    conv2_weight: Tensor,
    bn2_weight: Tensor,
    bn2_bias: Tensor,
    shortcut_weight: Tensor | None = None,
    shortcut_bn_weight: Tensor | None = None,
    shortcut_bn_bias: Tensor | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> Tensor:
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), batch statistics (training)."""

    def norm(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        return batch_norm(x, None, None, weight, bias, True, 0.0, eps)[0]

    hidden = norm(conv(input, conv1_weight, None, stride, 1), bn1_weight, bn1_bias).relu()
    body = norm(conv(hidden, conv2_weight, None, 1, 1), bn2_weight, bn2_bias)
    skip = input
    if shortcut_weight is not None:
        skip = norm(
            conv(input, shortcut_weight, None, stride), shortcut_bn_weight, shortcut_bn_bias
        )
    return (body + skip).relu()
