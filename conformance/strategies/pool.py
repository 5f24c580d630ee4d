"""Valid pooling, adaptive pooling and fold/unfold calls, by construction.

Input sizes are drawn at or above the smallest one with a non-empty output, so nothing is
filtered; ties, NaN, +-inf and -0.0 come from the ``integers`` and ``specials`` value kinds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.example import FINITE_KINDS, VALUE_KINDS, Example, fill, values_and_seed
from conformance.strategies.conv import MAX_KERNEL, MAX_OUT, _compact, _small_knob
from conformance.strategies.knobs import choice, optional

NORM_TYPES = (1.0, 2.0, 3.0, 1.5)


def _input(
    draw: st.DrawFn, spatial: list[int], kinds: tuple[str, ...], channels: int | None = None
) -> tuple[np.ndarray, str, int]:
    batch = draw(optional(1, 3))
    channels = draw(st.integers(1, 3)) if channels is None else channels
    shape = (channels, *spatial) if batch is None else (batch, channels, *spatial)
    values, seed = draw(values_and_seed(kinds))
    return fill(shape, values, np.random.default_rng(seed)), values, seed


LP_PAIRS = [(p, kind) for p in NORM_TYPES for kind in (*FINITE_KINDS, "sparse")]


@st.composite
def pool_examples(draw: st.DrawFn, dims: int, kind: str) -> Example:
    """max (with dilation and return_indices), avg (with the divisor knobs) or lp pooling."""
    kernel, stride, padding, dilation, sizes = [], [], [], [], []
    default_stride = draw(st.booleans())
    # about one max example in five gets an axis whose window has no element inside the
    # input (kernel 2, dilation 2, padding 1 over a size-1 axis): rare by chance, and where
    # torch goes wrong
    sparse_axis = draw(st.integers(0, 5 * dims)) if kind == "max" else dims
    for axis in range(dims):
        if axis == sparse_axis:
            kernel.append(2)
            stride.append(2 if default_stride else draw(st.integers(1, 3)))
            padding.append(1)
            dilation.append(2)
            sizes.append(1)
            continue
        k = draw(st.integers(1, MAX_KERNEL[dims]))
        s = k if default_stride else _small_knob(draw, 3)
        d = _small_knob(draw, 2) if kind == "max" else 1
        p = draw(st.integers(0, k // 2)) if kind != "lp" else 0
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        sizes.append(draw(st.integers(smallest, smallest + s * (MAX_OUT[dims] - 1) + s - 1)))
        kernel.append(k)
        stride.append(s)
        padding.append(p)
        dilation.append(d)
    kinds: tuple[str, ...] = (*VALUE_KINDS, "sinks") if kind == "max" else VALUE_KINDS
    if kind == "lp":
        # p and the value kind drawn as one pair, so that every p meets every kind -
        # mostly-zero inputs included, whose windows sum to 0 (the p = 1 kink)
        norm_type, chosen = draw(choice(*LP_PAIRS))
        kinds = (chosen,)
    x, values, seed = _input(draw, sizes, kinds)
    # torch's lp_pool1d takes kernel_size and stride as ints only (its documented API)
    single = kind == "lp" and dims == 1
    config: dict[str, Any] = {"kernel_size": kernel[0] if single else _compact(draw, kernel)}
    if kind == "lp":
        if not norm_type.is_integer():
            x = np.abs(x)  # a negative base to a fractional power is NaN: no information
        config = {"norm_type": norm_type, **config}
    config["stride"] = None if default_stride else stride[0] if single else _compact(draw, stride)
    if kind != "lp":
        config["padding"] = _compact(draw, padding)
    if kind == "max":
        config["dilation"] = _compact(draw, dilation)
    config["ceil_mode"] = draw(st.booleans())
    if kind == "max":
        config["return_indices"] = draw(st.booleans())
    if kind == "avg":
        config["count_include_pad"] = draw(st.booleans())
        if dims > 1:  # avg_pool1d has no divisor_override
            config["divisor_override"] = draw(optional(1, 5))
    return Example({"input": x}, config, values, seed)


@st.composite
def adaptive_examples(draw: st.DrawFn, dims: int, kind: str) -> Example:
    """Output sizes below, equal to and above the input's, dividing it or not; None keeps one."""
    sizes = [draw(st.integers(1, 7 if dims < 3 else 4)) for _ in range(dims)]
    x, values, seed = _input(draw, sizes, VALUE_KINDS)
    out: list[int | None] = []
    for size in sizes:
        choice = draw(st.integers(1, 2 * size + 1))
        out.append(None if dims > 1 and draw(st.integers(0, 7)) == 0 else choice)
    output_size: Any = out[0] if dims == 1 else tuple(out)
    config: dict[str, Any] = {"output_size": output_size}
    if kind == "max":
        config["return_indices"] = draw(st.booleans())
    return Example({"input": x}, config, values, seed)


def _block_grid(draw: st.DrawFn) -> tuple[dict[str, Any], list[int], list[int]]:
    """fold/unfold knobs and an image size with at least one block; returns the blocks too."""
    kernel, dilation, padding, stride, sizes, blocks = [], [], [], [], [], []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        d = _small_knob(draw, 2)
        s = _small_knob(draw, 3)
        p = draw(st.integers(0, 2))
        count = draw(st.integers(1, 4))
        size = max(1, (count - 1) * s + d * (k - 1) + 1 - 2 * p + draw(st.integers(0, s - 1)))
        blocks.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        kernel.append(k)
        dilation.append(d)
        padding.append(p)
        stride.append(s)
        sizes.append(size)
    config = {
        "kernel_size": _compact(draw, kernel),
        "dilation": _compact(draw, dilation),
        "padding": _compact(draw, padding),
        "stride": _compact(draw, stride),
    }
    return config, sizes, [blocks[0] * blocks[1], kernel[0] * kernel[1]]


@st.composite
def unfold_examples(draw: st.DrawFn) -> Example:
    config, sizes, _ = _block_grid(draw)
    x, values, seed = _input(draw, sizes, VALUE_KINDS)
    return Example({"input": x}, config, values, seed)


@st.composite
def fold_examples(draw: st.DrawFn) -> Example:
    config, sizes, (blocks, taps) = _block_grid(draw)
    channels = draw(st.integers(1, 3))
    batch = draw(optional(1, 3))
    shape = (channels * taps, blocks) if batch is None else (batch, channels * taps, blocks)
    values, seed = draw(values_and_seed(VALUE_KINDS))
    columns = fill(shape, values, np.random.default_rng(seed))
    return Example({"input": columns}, {"output_size": tuple(sizes), **config}, values, seed)
