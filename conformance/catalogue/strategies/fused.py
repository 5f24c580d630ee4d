"""Valid calls of the fusion chains, by construction: conv2d's knobs (zeros padding, the
functional API's only mode), then conv_bn_relu's batch norm in eval mode (its statistics) or
conv_max_pool's pooling window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import reference
from conformance.catalogue.example import FINITE_KINDS, Example, fill
from conformance.catalogue.strategies.conv import MAX_KERNEL, MAX_OUT, _channel_layout
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy
from reference.shapes import pool_output_size

# where the running statistics come from: drawn on their own, or the batch's own (the model
# was calibrated on this data): then c - running_mean cancels, the case where folding the
# mean into the bias and subtracting it after the convolution round differently
STATISTICS = ("drawn", "of the batch")


def _statistics(
    kind: str, conv: np.ndarray, values: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(running_mean, running_var), a variance positive: |.| plus a floor, or the batch's
    own variance plus a small floor (a channel of one value has variance 0)."""
    channels = conv.shape[1]
    if kind == "drawn":
        return fill((channels,), values, rng), np.abs(fill((channels,), values, rng)) + 0.1
    axes = (0, 2, 3)
    return conv.mean(axis=axes), conv.var(axis=axes) + 1e-3


@dataclass(frozen=True)
class ConvKnobs:
    """A 2-d convolution's drawn layout: the input's shape, the weight's, the config, and
    the convolution's output size per axis."""

    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    config: dict[str, Any]
    out_size: tuple[int, ...]


def _conv2d_knobs(knobs: Knobs) -> ConvKnobs:
    """The knobs of conv_examples(2) without padding_mode (the functional API's chains have
    only zeros padding)."""
    batch = knobs.optional(1, 3)
    groups, in_per_group, out_per_group = _channel_layout(knobs)
    padding_kind = knobs.choice("ints", "ints", "same", "valid")
    kernel, stride, dilation, padding, sizes, outs = [], [], [], [], [], []
    for _ in range(2):
        # five knobs per axis whatever the padding kind, so that the others keep their bytes
        k, d, s = knobs.integer(1, MAX_KERNEL[2]), knobs.small(3), knobs.small(3)
        out, extra, pad = knobs.integer(1, MAX_OUT[2]), knobs.integer(0, 255), knobs.integer(0, 255)
        if padding_kind == "same":
            s, p, size = 1, 0, out
        else:
            span = (out - 1) * s + d * (k - 1) + 1 + extra * s // 256  # the extra < s: out stays
            largest = min(3, (span - 1) // 2)
            p = pad * (largest + 1) // 256 if padding_kind == "ints" else 0
            size = span - 2 * p
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        sizes.append(size)
        outs.append(out)
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    config: dict[str, Any] = {
        "stride": _knob(stride),
        "padding": _knob(padding) if padding_kind == "ints" else padding_kind,
        "dilation": _knob(dilation),
        "groups": groups,
    }
    shape = (in_channels, *sizes) if batch is None else (batch, in_channels, *sizes)
    return ConvKnobs(shape, (out_channels, in_per_group, *kernel), config, tuple(outs))


def _knob(values: list[int]) -> int | tuple[int, ...]:
    """One int where the axes agree, else a tuple."""
    return tuple(values) if len(set(values)) > 1 else values[0]


@knob_strategy
def conv_bn_relu_examples(knobs: Knobs) -> Example:
    """The knobs of conv_examples(2) without padding_mode, then batch norm's: which affine
    parameters, where the statistics come from, eps."""
    conv = _conv2d_knobs(knobs)
    out_channels = conv.weight_shape[0]
    has_bias, has_weight, has_shift = knobs.boolean(), knobs.boolean(), knobs.boolean()
    statistics = knobs.choice(*STATISTICS)
    config = {**conv.config, "eps": knobs.choice(1e-5, 1e-3, 0.1)}
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    x = fill(conv.input_shape, values, rng)
    weight = fill(conv.weight_shape, values, rng)
    bias = fill((out_channels,), values, rng) if has_bias else None
    batched = x if len(conv.input_shape) == 4 else x[np.newaxis]
    c = reference.conv2d(batched, weight, bias, **conv.config)
    running_mean, running_var = _statistics(statistics, c, values, rng)
    arrays: dict[str, np.ndarray | None] = {
        "input": x,
        "weight": weight,
        "bias": bias,
        "running_mean": running_mean,
        "running_var": running_var,
        "bn_weight": fill((out_channels,), values, rng) if has_weight else None,
        "bn_bias": fill((out_channels,), values, rng) if has_shift else None,
    }
    return Example(arrays, config, values, seed)


def _some_window_empty(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> bool:
    """Whether a pooling window (torch's output size) holds no element of an axis of
    ``size``: a dilated window can step over a short input. The max_pool entries judge that
    case (torch's backward then writes out of bounds: reports/findings/torch/
    max-pool-backward-empty-window-heap-corruption.md); a chain drawing it would only find
    the same defect again, through a crash."""
    out = pool_output_size(size, k, s, p, d, ceil_mode)
    assert isinstance(out, int)
    return any(not any(0 <= q * s - p + t * d < size for t in range(k)) for q in range(out))


@knob_strategy
def conv_max_pool_examples(knobs: Knobs) -> Example:
    """conv_bn_relu's convolution, then a max pool that fits its output: per axis a kernel
    of 1-3, dilation 1-2, padding up to half the kernel, stride 1-3 or the kernel's (None);
    ceil_mode. A window too wide for the convolution's output is narrowed (dilation 1, the
    kernel at most the padded size), so every drawn call is valid, and one that would hold
    no element is undilated; a quarter of the draws take ResNet's stem pool (3, stride 2,
    padding 1)."""
    conv = _conv2d_knobs(knobs)
    default_stride, ceil_mode = knobs.boolean(), knobs.boolean()
    stem = knobs.choice(False, False, False, True)  # ResNet's: 3x3, stride 2, padding 1
    kernel, stride, padding, dilation = [], [], [], []
    for out in conv.out_size:
        k, d, s, pad = knobs.integer(1, 3), knobs.small(2), knobs.small(3), knobs.integer(0, 255)
        p = pad * (k // 2 + 1) // 256
        if d * (k - 1) + 1 > out + 2 * p:
            d, k = 1, min(k, out + 2 * p)
            p = min(p, k // 2)
        if stem:
            k, d, s, p = 3, 1, 2, 1
        s = k if default_stride and not stem else s
        if _some_window_empty(out, k, s, p, d, ceil_mode):
            d = 1  # an undilated window always holds an element (padding <= kernel // 2)
        kernel.append(k)
        dilation.append(d)
        stride.append(s)
        padding.append(p)
    has_bias = knobs.boolean()
    config = {
        **conv.config,
        "pool_kernel_size": _knob(kernel),
        "pool_stride": None if default_stride and not stem else _knob(stride),
        "pool_padding": _knob(padding),
        "pool_dilation": _knob(dilation),
        "ceil_mode": ceil_mode,
    }
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray | None] = {
        "input": fill(conv.input_shape, values, rng),
        "weight": fill(conv.weight_shape, values, rng),
        "bias": fill((conv.weight_shape[0],), values, rng) if has_bias else None,
    }
    return Example(arrays, config, values, seed)


@knob_strategy
def conv_transpose_conv_examples(knobs: Knobs) -> Example:
    """A dense transposed convolution as conv_transpose_examples(2) draws it (stride 1-3,
    dilation 1-3, output_padding below the larger of the two, padding within the full
    output), then a stride-1 convolution of its output: a kernel of 1-3 per axis, padding
    ints (0-2), 'same' or 'valid', narrowed to fit the upsampled size."""
    batch = knobs.optional(1, 3)
    channels, mid, out_channels = knobs.integer(1, 3), knobs.integer(1, 3), knobs.integer(1, 3)
    conv_padding_kind = knobs.choice("ints", "ints", "same", "valid")
    kernel, stride, dilation, padding, output_padding, sizes, conv_kernel, conv_pads = (
        [], [], [], [], [], [], [], []
    )  # fmt: skip
    for _ in range(2):
        size, k, s, d = knobs.integer(1, 3), knobs.integer(1, 3), knobs.small(3), knobs.small(3)
        extra = knobs.integer(0, max(s, d) - 1)
        full_minus_one = (size - 1) * s + d * (k - 1) + extra
        p = knobs.integer(0, min(3, full_minus_one // 2))
        upsampled = full_minus_one - 2 * p + 1
        k2, p2 = knobs.integer(1, 3), knobs.integer(0, 2)
        if conv_padding_kind != "ints":
            p2 = 0
        if conv_padding_kind != "same":
            k2 = min(k2, upsampled + 2 * p2)
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        output_padding.append(extra)
        sizes.append(size)
        conv_kernel.append(k2)
        conv_pads.append(p2)
    has_transpose_bias, has_conv_bias = knobs.boolean(), knobs.boolean()
    config: dict[str, Any] = {
        "stride": _knob(stride),
        "padding": _knob(padding),
        "output_padding": _knob(output_padding),
        "dilation": _knob(dilation),
        "conv_padding": _knob(conv_pads) if conv_padding_kind == "ints" else conv_padding_kind,
    }
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    shape = (channels, *sizes) if batch is None else (batch, channels, *sizes)
    arrays: dict[str, np.ndarray | None] = {
        "input": fill(shape, values, rng),
        "transpose_weight": fill((channels, mid, *kernel), values, rng),
        "conv_weight": fill((out_channels, mid, *conv_kernel), values, rng),
        "transpose_bias": fill((mid,), values, rng) if has_transpose_bias else None,
        "conv_bias": fill((out_channels,), values, rng) if has_conv_bias else None,
    }
    return Example(arrays, config, values, seed)
