"""Valid patch-embedding and depthwise-separable calls, and inputs for channel statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.example import FINITE_KINDS, STATISTICS_KINDS, Example, fill, values_and_seed
from conformance.strategies.knobs import choice, optional


def _batch(draw: st.DrawFn) -> int | None:
    return draw(optional(1, 2))


def _shape(batch: int | None, *rest: int) -> tuple[int, ...]:
    return rest if batch is None else (batch, *rest)


@st.composite
def patch_examples(draw: st.DrawFn) -> Example:
    batch, channels, patch = _batch(draw), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    height = rows * patch + draw(st.integers(0, patch - 1))  # a remainder the patches drop
    width = cols * patch + draw(st.integers(0, patch - 1))
    embed = draw(st.integers(1, 4))
    values, seed = draw(values_and_seed(FINITE_KINDS))
    rng = np.random.default_rng(seed)
    arrays = {
        "input": fill(_shape(batch, channels, height, width), values, rng),
        "weight": fill((embed, channels, patch, patch), values, rng),
        "bias": fill((embed,), values, rng) if draw(st.booleans()) else None,
    }
    return Example(arrays, {}, values, seed)


@st.composite
def separable_examples(draw: st.DrawFn) -> Example:
    batch, channels = _batch(draw), draw(st.integers(1, 3))
    hidden = channels * draw(st.integers(1, 2))
    out = draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.integers(1, 2))
    same = draw(st.booleans())
    stride = 1 if same else draw(st.integers(1, 2))
    padding: Any = "same" if same else draw(st.integers(0, 2))
    pad = 0 if same else padding
    sizes = [max(1, dilation * (k - 1) + 1 - 2 * pad) + draw(st.integers(0, 3)) for k in kernel]
    values, seed = draw(values_and_seed(FINITE_KINDS))
    rng = np.random.default_rng(seed)
    arrays = {
        "input": fill(_shape(batch, channels, *sizes), values, rng),
        "depthwise_weight": fill((hidden, 1, *kernel), values, rng),
        "pointwise_weight": fill((out, hidden, 1, 1), values, rng),
        "depthwise_bias": fill((hidden,), values, rng) if draw(st.booleans()) else None,
        "pointwise_bias": fill((out,), values, rng) if draw(st.booleans()) else None,
    }
    config = {"stride": stride, "padding": padding, "dilation": dilation}
    return Example(arrays, config, values, seed)


@st.composite
def statistics_examples(draw: st.DrawFn) -> Example:
    correction = draw(choice(0, 1))
    spatial = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 3)))]
    batch, channels = draw(st.integers(1 + correction, 4)), draw(st.integers(1, 4))
    values, seed = draw(values_and_seed(STATISTICS_KINDS))
    x = fill((batch, channels, *spatial), values, np.random.default_rng(seed))
    return Example({"input": x}, {"correction": correction}, values, seed)


@st.composite
def residual_examples(draw: st.DrawFn) -> Example:
    """Identity shortcut (stride 1, same channels) or a strided 1x1 projection."""
    projection = draw(st.booleans())
    channels = draw(st.integers(1, 3))
    out = draw(st.integers(1, 4)) if projection else channels
    stride = draw(st.integers(1, 2)) if projection else 1
    batch, height, width = draw(st.integers(2, 3)), draw(st.integers(2, 5)), draw(st.integers(2, 5))
    values, seed = draw(values_and_seed(FINITE_KINDS))
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray | None] = {
        "input": fill((batch, channels, height, width), values, rng),
        "conv1_weight": fill((out, channels, 3, 3), values, rng),
        "bn1_weight": fill((out,), values, rng),
        "bn1_bias": fill((out,), values, rng),
        "conv2_weight": fill((out, out, 3, 3), values, rng),
        "bn2_weight": fill((out,), values, rng),
        "bn2_bias": fill((out,), values, rng),
        "shortcut_weight": fill((out, channels, 1, 1), values, rng) if projection else None,
        "shortcut_bn_weight": fill((out,), values, rng) if projection else None,
        "shortcut_bn_bias": fill((out,), values, rng) if projection else None,
    }
    config = {"stride": stride, "eps": draw(choice(1e-5, 1e-3))}
    return Example(arrays, config, values, seed)
