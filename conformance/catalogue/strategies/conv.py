"""Valid convolution and transposed-convolution calls, by construction.

Draw the output size and the knobs, then derive the input size that yields them; draw the
channels as groups * per-group. Nothing is filtered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.catalogue.example import FINITE_KINDS, Example, fill
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy
from reference.padding import PADDING_MODES
from reference.shapes import same_padding

# Per spatial rank: the largest kernel and output extent, so arrays stay small.
MAX_KERNEL = {1: 5, 2: 4, 3: 3}
MAX_OUT = {1: 6, 2: 4, 3: 3}


def _channel_layout(k: Knobs) -> tuple[int, int, int]:
    """(groups, in_per_group, out_per_group): dense, grouped, or depthwise (x multiplier)."""
    # three knobs whatever the layout, so that the knobs after them keep their bytes
    layout = k.choice("dense", "dense", "grouped", "depthwise")
    first, second, third = k.integer(0, 255), k.integer(0, 255), k.integer(0, 255)
    if layout == "dense":
        return 1, 1 + first * 4 // 256, 1 + second * 4 // 256
    if layout == "grouped":
        return 2 + first * 2 // 256, 1 + second * 3 // 256, 1 + third * 3 // 256
    return 1 + first * 4 // 256, 1, 1 + second * 2 // 256


def _largest_padding(padding_mode: str, span: int) -> int:
    """Largest p with input size span - 2p valid for the mode (>= 1; reflect p < size; ...)."""
    if padding_mode == "reflect":
        return (span - 1) // 3
    if padding_mode == "circular":
        return span // 3
    return (span - 1) // 2


def _arrays(
    k: Knobs, shapes: dict[str, tuple[int, ...] | None]
) -> tuple[dict[str, np.ndarray | None], str, int]:
    values, seed = k.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    arrays = {n: None if s is None else fill(s, values, rng) for n, s in shapes.items()}
    return arrays, values, seed


def _conv_arrays(
    k: Knobs,
    batch: int | None,
    in_channels: int,
    sizes: list[int],
    weight_shape: tuple[int, ...],
    out_channels: int,
) -> tuple[dict[str, np.ndarray | None], str, int]:
    """input (unbatched when batch is None), weight and maybe a bias, filled from one seed."""
    input_shape = (in_channels, *sizes) if batch is None else (batch, in_channels, *sizes)
    has_bias = k.boolean()
    return _arrays(
        k,
        {
            "input": input_shape,
            "weight": weight_shape,
            "bias": (out_channels,) if has_bias else None,
        },
    )


@knob_strategy
def conv_examples(knobs: Knobs, dims: int) -> Example:
    batch = knobs.optional(1, 3)
    groups, in_per_group, out_per_group = _channel_layout(knobs)
    padding_kind = knobs.choice("ints", "ints", "same", "valid")
    # zeros is the default and the functional API's only mode: weight it as users do
    padding_mode = knobs.choice("zeros", *PADDING_MODES)
    kernel, stride, dilation, padding, sizes = [], [], [], [], []
    for _ in range(dims):
        # five knobs per axis whatever the padding kind, so that shrinking one knob leaves
        # the bytes of the others where they were
        k = knobs.integer(1, MAX_KERNEL[dims])
        d = knobs.small(3)
        s = knobs.small(3)
        out = knobs.integer(1, MAX_OUT[dims])
        extra, pad = knobs.integer(0, 255), knobs.integer(0, 255)
        if padding_kind == "same":
            s, p = 1, 0
            before, after = same_padding(k, d)[0]
            smallest = {"reflect": max(before, after) + 1, "circular": max(1, after)}
            size = smallest.get(padding_mode, 1) + out - 1
        else:
            span = (out - 1) * s + d * (k - 1) + 1 + extra * s // 256
            largest = min(3, _largest_padding(padding_mode, span))
            p = pad * (largest + 1) // 256 if padding_kind == "ints" else 0
            size = span - 2 * p
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        sizes.append(size)
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    arrays, values, seed = _conv_arrays(
        knobs, batch, in_channels, sizes, (out_channels, in_per_group, *kernel), out_channels
    )
    stride_value, padding_value = _compact(knobs, stride), _compact(knobs, padding)
    config: dict[str, Any] = {
        "stride": stride_value,
        "padding": padding_value if padding_kind == "ints" else padding_kind,
        "dilation": _compact(knobs, dilation),
        "groups": groups,
        "padding_mode": padding_mode,
    }
    return Example(arrays, config, values, seed)


@knob_strategy
def conv_transpose_examples(knobs: Knobs, dims: int) -> Example:
    batch = knobs.optional(1, 3)
    groups, in_per_group, out_per_group = _channel_layout(knobs)
    kernel, stride, dilation, padding, output_padding, sizes = [], [], [], [], [], []
    for _ in range(dims):
        size = knobs.integer(1, MAX_OUT[dims])
        k = knobs.integer(1, MAX_KERNEL[dims])
        s = knobs.small(3)
        d = knobs.small(3)
        extra = knobs.integer(0, max(s, d) - 1)
        full_minus_one = (size - 1) * s + d * (k - 1) + extra  # output size is this - 2p + 1
        p = knobs.integer(0, min(3, full_minus_one // 2))
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        output_padding.append(extra)
        sizes.append(size)
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    arrays, values, seed = _conv_arrays(
        knobs, batch, in_channels, sizes, (in_channels, out_per_group, *kernel), out_channels
    )
    config: dict[str, Any] = {
        "stride": _compact(knobs, stride),
        "padding": _compact(knobs, padding),
        "output_padding": _compact(knobs, output_padding),
        "groups": groups,
        "dilation": _compact(knobs, dilation),
    }
    return Example(arrays, config, values, seed)


def _compact(knobs: Knobs, values: list[int]) -> int | tuple[int, ...]:
    """Pass equal per-dimension values as one int half of the time, as callers do."""
    single = knobs.boolean()  # drawn whether or not it applies: the next knobs keep their bytes
    if len(set(values)) == 1 and single:
        return values[0]
    return tuple(values)
