"""Valid patch-embedding and depthwise-separable calls, and inputs for channel statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.catalogue.example import FINITE_KINDS, STATISTICS_KINDS, Example, fill
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy


def _batch(knobs: Knobs) -> int | None:
    return knobs.optional(1, 2)


def _shape(batch: int | None, *rest: int) -> tuple[int, ...]:
    return rest if batch is None else (batch, *rest)


@knob_strategy
def patch_examples(knobs: Knobs) -> Example:
    batch, channels, patch = _batch(knobs), knobs.integer(1, 3), knobs.integer(1, 4)
    rows, cols = knobs.integer(1, 3), knobs.integer(1, 3)
    height = rows * patch + knobs.integer(0, patch - 1)  # a remainder the patches drop
    width = cols * patch + knobs.integer(0, patch - 1)
    embed = knobs.integer(1, 4)
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    rng = np.random.default_rng(seed)
    arrays = {
        "input": fill(_shape(batch, channels, height, width), values, rng),
        "weight": fill((embed, channels, patch, patch), values, rng),
        "bias": fill((embed,), values, rng) if knobs.boolean() else None,
    }
    return Example(arrays, {}, values, seed)


@knob_strategy
def separable_examples(knobs: Knobs) -> Example:
    batch, channels = _batch(knobs), knobs.integer(1, 3)
    hidden = channels * knobs.integer(1, 2)
    out = knobs.integer(1, 4)
    kernel = (knobs.integer(1, 3), knobs.integer(1, 3))
    dilation = knobs.integer(1, 2)
    same, strided, padded = knobs.boolean(), knobs.integer(1, 2), knobs.integer(0, 2)
    stride = 1 if same else strided
    padding: Any = "same" if same else padded
    pad = 0 if same else padding
    sizes = [max(1, dilation * (k - 1) + 1 - 2 * pad) + knobs.integer(0, 3) for k in kernel]
    values, seed = knobs.values_and_seed(FINITE_KINDS)
    depthwise_bias, pointwise_bias = knobs.boolean(), knobs.boolean()
    rng = np.random.default_rng(seed)
    arrays = {
        "input": fill(_shape(batch, channels, *sizes), values, rng),
        "depthwise_weight": fill((hidden, 1, *kernel), values, rng),
        "pointwise_weight": fill((out, hidden, 1, 1), values, rng),
        "depthwise_bias": fill((hidden,), values, rng) if depthwise_bias else None,
        "pointwise_bias": fill((out,), values, rng) if pointwise_bias else None,
    }
    config = {"stride": stride, "padding": padding, "dilation": dilation}
    return Example(arrays, config, values, seed)


@knob_strategy
def statistics_examples(knobs: Knobs) -> Example:
    correction = knobs.choice(0, 1)
    rank, sizes = knobs.integer(0, 3), [knobs.integer(1, 4) for _ in range(3)]
    spatial = sizes[:rank]  # three sizes whatever the rank: the next knobs keep their bytes
    batch, channels = knobs.integer(1 + correction, 4), knobs.integer(1, 4)
    values, seed = knobs.values_and_seed(STATISTICS_KINDS)
    x = fill((batch, channels, *spatial), values, np.random.default_rng(seed))
    return Example({"input": x}, {"correction": correction}, values, seed)


@knob_strategy
def residual_examples(knobs: Knobs) -> Example:
    """Identity shortcut (stride 1, same channels) or a strided 1x1 projection."""
    projection = knobs.boolean()
    channels = knobs.integer(1, 3)
    widened, strided = knobs.integer(1, 4), knobs.integer(1, 2)  # drawn either way
    out = widened if projection else channels
    stride = strided if projection else 1
    batch, height, width = knobs.integer(2, 3), knobs.integer(2, 5), knobs.integer(2, 5)
    values, seed = knobs.values_and_seed(FINITE_KINDS)
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
    config = {"stride": stride, "eps": knobs.choice(1e-5, 1e-3)}
    return Example(arrays, config, values, seed)
