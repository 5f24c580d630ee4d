"""Valid pooling, adaptive pooling and fold/unfold calls, by construction.

Input sizes are drawn at or above the smallest one with a non-empty output, so nothing is
filtered; ties, NaN, +-inf and -0.0 come from the ``integers`` and ``specials`` value kinds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.catalogue.example import FINITE_KINDS, VALUE_KINDS, Example, fill
from conformance.catalogue.strategies.conv import MAX_KERNEL, MAX_OUT, _compact
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy

NORM_TYPES = (1.0, 2.0, 3.0, 1.5)


def _input(
    knobs: Knobs, spatial: list[int], kinds: tuple[str, ...], channels: int | None = None
) -> tuple[np.ndarray, str, int]:
    batch = knobs.optional(1, 3)
    channels = knobs.integer(1, 3) if channels is None else channels
    shape = (channels, *spatial) if batch is None else (batch, channels, *spatial)
    values, seed = knobs.values_and_seed(kinds)
    return fill(shape, values, np.random.default_rng(seed)), values, seed


LP_PAIRS = [(p, kind) for p in NORM_TYPES for kind in (*FINITE_KINDS, "sparse")]


@knob_strategy
def pool_examples(knobs: Knobs, dims: int, kind: str) -> Example:
    """max (with dilation and return_indices), avg (with the divisor knobs) or lp pooling."""
    kernel, stride, padding, dilation, sizes = [], [], [], [], []
    default_stride = knobs.boolean()
    # about one max example in five gets an axis whose window has no element inside the
    # input (kernel 2, dilation 2, padding 1 over a size-1 axis): rare by chance, and where
    # torch goes wrong. The knob's top values pick the axis, so that it shrinks to none.
    pick = knobs.integer(0, 5 * dims) if kind == "max" else 0
    sparse_axis = pick - 4 * dims - 1 if pick > 4 * dims else dims
    for axis in range(dims):
        # every axis reads the same five knobs, so that shrinking one (the empty-window pick,
        # the default stride) leaves the bytes of the others where they were
        k = knobs.integer(1, MAX_KERNEL[dims])
        s = knobs.small(3)
        d = knobs.small(2) if kind == "max" else 1
        p = knobs.integer(0, k // 2) if kind != "lp" else 0
        if axis == sparse_axis:
            k, p, d = 2, 1, 2
        s = k if default_stride else s
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        size = knobs.integer(smallest, smallest + s * (MAX_OUT[dims] - 1) + s - 1)
        sizes.append(1 if axis == sparse_axis else size)
        kernel.append(k)
        stride.append(s)
        padding.append(p)
        dilation.append(d)
    kinds: tuple[str, ...] = (*VALUE_KINDS, "sinks") if kind == "max" else VALUE_KINDS
    if kind == "lp":
        # p and the value kind drawn as one pair, so that every p meets every kind -
        # mostly-zero inputs included, whose windows sum to 0 (the p = 1 kink)
        norm_type, chosen = knobs.choice(*LP_PAIRS)
        kinds = (chosen,)
    x, values, seed = _input(knobs, sizes, kinds)
    # torch's lp_pool1d takes kernel_size and stride as ints only (its documented API)
    single = kind == "lp" and dims == 1
    config: dict[str, Any] = {"kernel_size": kernel[0] if single else _compact(knobs, kernel)}
    if kind == "lp":
        if not norm_type.is_integer():
            x = np.abs(x)  # a negative base to a fractional power is NaN: no information
        config = {"norm_type": norm_type, **config}
    strides = stride[0] if single else _compact(knobs, stride)
    config["stride"] = None if default_stride else strides
    if kind != "lp":
        config["padding"] = _compact(knobs, padding)
    if kind == "max":
        config["dilation"] = _compact(knobs, dilation)
    config["ceil_mode"] = knobs.boolean()
    if kind == "max":
        config["return_indices"] = knobs.boolean()
    if kind == "avg":
        config["count_include_pad"] = knobs.boolean()
        if dims > 1:  # avg_pool1d has no divisor_override
            config["divisor_override"] = knobs.optional(1, 5)
    return Example({"input": x}, config, values, seed)


@knob_strategy
def adaptive_examples(knobs: Knobs, dims: int, kind: str) -> Example:
    """Output sizes below, equal to and above the input's, dividing it or not; None keeps one."""
    sizes = [knobs.integer(1, 7 if dims < 3 else 4) for _ in range(dims)]
    x, values, seed = _input(knobs, sizes, VALUE_KINDS)
    out: list[int | None] = []
    for size in sizes:
        choice = knobs.integer(1, 2 * size + 1)
        out.append(None if dims > 1 and knobs.integer(0, 7) == 0 else choice)
    output_size: Any = out[0] if dims == 1 else tuple(out)
    config: dict[str, Any] = {"output_size": output_size}
    if kind == "max":
        config["return_indices"] = knobs.boolean()
    return Example({"input": x}, config, values, seed)


def _block_grid(knobs: Knobs) -> tuple[dict[str, Any], list[int], list[int]]:
    """fold/unfold knobs and an image size with at least one block; returns the blocks too."""
    kernel, dilation, padding, stride, sizes, blocks = [], [], [], [], [], []
    for _ in range(2):
        k = knobs.integer(1, 4)
        d = knobs.small(2)
        s = knobs.small(3)
        p = knobs.integer(0, 2)
        count = knobs.integer(1, 4)
        size = max(1, (count - 1) * s + d * (k - 1) + 1 - 2 * p + knobs.integer(0, s - 1))
        blocks.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        kernel.append(k)
        dilation.append(d)
        padding.append(p)
        stride.append(s)
        sizes.append(size)
    config = {
        "kernel_size": _compact(knobs, kernel),
        "dilation": _compact(knobs, dilation),
        "padding": _compact(knobs, padding),
        "stride": _compact(knobs, stride),
    }
    return config, sizes, [blocks[0] * blocks[1], kernel[0] * kernel[1]]


@knob_strategy
def unfold_examples(knobs: Knobs) -> Example:
    config, sizes, _ = _block_grid(knobs)
    x, values, seed = _input(knobs, sizes, VALUE_KINDS)
    return Example({"input": x}, config, values, seed)


@knob_strategy
def fold_examples(knobs: Knobs) -> Example:
    config, sizes, (blocks, taps) = _block_grid(knobs)
    channels = knobs.integer(1, 3)
    batch = knobs.optional(1, 3)
    shape = (channels * taps, blocks) if batch is None else (batch, channels * taps, blocks)
    values, seed = knobs.values_and_seed(VALUE_KINDS)
    columns = fill(shape, values, np.random.default_rng(seed))
    return Example({"input": columns}, {"output_size": tuple(sizes), **config}, values, seed)
