"""How torch's FlopCounterMode counts convolutions, where it departs from the product count
of ``reference.layers``: the rule the network-arithmetic checks (conformance.campaign.
arithmetic) and the model command's FLOPs table (conformance.model) both explain torch's
count with, without importing each other."""

from __future__ import annotations

import math
from typing import Any

from reference import layers


def _every_pair(layer: layers.ConvTranspose, input_shape: tuple[int, ...]) -> int:
    """All input x weight products of a transposed convolution, cropped ones included."""
    channel_pairs = layer.in_channels * layer.out_channels // layer.groups
    return input_shape[0] * channel_pairs * math.prod(input_shape[2:]) * math.prod(layer.kernel())


def counter_prediction(description: Any, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs as FlopCounterMode counts them, from two stated
    departures from the product count: a transposed convolution's products that padding
    crops away are counted, and grad_weight of a grouped convolution is counted as if it
    paired every input channel with every output channel (groups times too many)."""
    if isinstance(description, (layers.Sequential, layers.Residual)):
        parts = (
            [
                (layer, shape)
                for layer, shape in zip(
                    description.layers, description._shapes(input_shape), strict=False
                )
            ]
            if isinstance(description, layers.Sequential)
            else [(description.body, input_shape)]
            + ([] if description.shortcut is None else [(description.shortcut, input_shape)])
        )
        totals = [counter_prediction(layer, shape) for layer, shape in parts]
        return sum(t[0] for t in totals), sum(t[1] for t in totals)
    ours = description.flops(input_shape)
    if isinstance(description, layers.ConvTranspose):
        every = 2 * _every_pair(description, input_shape)
        return every, every * (2 + description.groups)
    groups = getattr(description, "groups", 1)
    return ours["forward"], ours["forward"] + ours["grad_input"] + groups * ours["grad_weight"]


COUNTER = (
    "FlopCounterMode counts a transposed convolution's products whose result padding crops "
    "away, and counts grad_weight of a grouped convolution as if every input channel met "
    "every output channel (groups times the products: grad_weight[o, c, k] sums only over "
    "o's group). Product walks decide (tests/reference/test_counting.py); torch's count "
    "equals this prediction exactly."
)
