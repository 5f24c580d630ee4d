"""Valid batch_norm calls: training (maybe without running statistics) and eval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from conformance.catalogue.example import STATISTICS_KINDS, Example, fill
from conformance.catalogue.strategies.knobs import Knobs, knob_strategy


@knob_strategy
def batch_norm_examples(knobs: Knobs) -> Example:
    training = knobs.boolean()
    rank, sizes = knobs.integer(0, 3), [knobs.integer(1, 4) for _ in range(3)]
    spatial = sizes[:rank]  # three sizes whatever the rank: the next knobs keep their bytes
    # training needs two values per channel: a batch of one only with space to spare
    smallest = 2 if training and math.prod(spatial) == 1 else 1
    batch, channels = knobs.integer(smallest, 4), knobs.integer(1, 3)
    values, seed = knobs.values_and_seed(STATISTICS_KINDS)
    rng = np.random.default_rng(seed)
    # drawn whatever training and affine are, so that the knobs after keep their bytes
    keep, affine, has_bias = knobs.boolean(), knobs.boolean(), knobs.boolean()
    keep_running = not training or keep
    arrays: dict[str, np.ndarray | None] = {
        "input": fill((batch, channels, *spatial), values, rng),
        "running_mean": fill((channels,), values, rng) if keep_running else None,
        # a variance is positive: |.| plus a floor keeps var + eps away from 0
        "running_var": np.abs(fill((channels,), values, rng)) + 0.1 if keep_running else None,
        "weight": fill((channels,), values, rng) if affine else None,
        "bias": fill((channels,), values, rng) if affine and has_bias else None,
    }
    config: dict[str, Any] = {
        "training": training,
        "momentum": knobs.choice(0.1, 0.0, 0.5, 1.0),
        "eps": knobs.choice(1e-5, 1e-3, 0.1),
    }
    return Example(arrays, config, values, seed)
