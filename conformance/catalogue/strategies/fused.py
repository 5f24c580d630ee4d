"""Valid conv_bn_relu calls: conv2d's knobs (zeros padding, the functional API's only mode)
and batch norm's eval statistics, by construction."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference
from conformance.catalogue.example import FINITE_KINDS, Example, fill
from conformance.catalogue.strategies.conv import MAX_KERNEL, MAX_OUT, _channel_layout
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy

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


@knob_strategy
def conv_bn_relu_examples(knobs: Knobs) -> Example:
    """The knobs of conv_examples(2) without padding_mode, then batch norm's: which affine
    parameters, where the statistics come from, eps."""
    batch = knobs.optional(1, 3)
    groups, in_per_group, out_per_group = _channel_layout(knobs)
    padding_kind = knobs.choice("ints", "ints", "same", "valid")
    kernel, stride, dilation, padding, sizes = [], [], [], [], []
    for _ in range(2):
        # five knobs per axis whatever the padding kind, so that the others keep their bytes
        k, d, s = knobs.integer(1, MAX_KERNEL[2]), knobs.small(3), knobs.small(3)
        out, extra, pad = knobs.integer(1, MAX_OUT[2]), knobs.integer(0, 255), knobs.integer(0, 255)
        if padding_kind == "same":
            s, p, size = 1, 0, out
        else:
            span = (out - 1) * s + d * (k - 1) + 1 + extra * s // 256
            largest = min(3, (span - 1) // 2)
            p = pad * (largest + 1) // 256 if padding_kind == "ints" else 0
            size = span - 2 * p
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        sizes.append(size)
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    has_bias, has_weight, has_shift = knobs.boolean(), knobs.boolean(), knobs.boolean()
    statistics = knobs.choice(*STATISTICS)
    eps = knobs.choice(1e-5, 1e-3, 0.1)
    config: dict[str, Any] = {
        "stride": tuple(stride) if len(set(stride)) > 1 else stride[0],
        "padding": (tuple(padding) if len(set(padding)) > 1 else padding[0])
        if padding_kind == "ints"
        else padding_kind,
        "dilation": tuple(dilation) if len(set(dilation)) > 1 else dilation[0],
        "groups": groups,
        "eps": eps,
    }
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    shape = (in_channels, *sizes) if batch is None else (batch, in_channels, *sizes)
    x = fill(shape, values, rng)
    weight = fill((out_channels, in_per_group, *kernel), values, rng)
    bias = fill((out_channels,), values, rng) if has_bias else None
    knob_values = (config["stride"], config["padding"], config["dilation"], groups)
    conv = reference.conv2d(x if batch else x[np.newaxis], weight, bias, *knob_values)
    running_mean, running_var = _statistics(statistics, conv, values, rng)
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
