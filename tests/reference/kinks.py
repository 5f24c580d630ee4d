"""Draws kept away from a ReLU's kink, where a central difference straddles it."""

from __future__ import annotations

import numpy as np
from hypothesis import assume

# A ReLU input this close to 0 may change sign between a - h t and a + h t (h = 1e-6, tangents
# of order one summed over a few dozen terms): the central difference then straddles the kink
# and estimates neither side's derivative. A CI run drew one at 4.1e-7 (conv_bn_relu's jvp,
# 0.17 off the analytic value, which was right on both sides).
KINK_MARGIN = 1e-3


def relu_inputs(op: str, args: list, config: dict) -> list[np.ndarray]:
    """What the op's ReLUs take, for the ops that have them (none for the others)."""
    from reference.blocks import _residual_forward
    from reference.fused import conv_bn_forward

    if op == "conv_bn_relu":
        return [conv_bn_forward(*args, **config).normalized]
    if op == "residual_block":
        values = _residual_forward(*args, **config)
        return [values.b1, values.body + values.skip]
    return []


def away_from_kinks(op: str, args: list, config: dict) -> None:
    """Discard (Hypothesis's assume) a draw with a ReLU input within KINK_MARGIN of 0."""
    copies = [None if a is None else a.copy() for a in args]
    for values in relu_inputs(op, copies, config):
        assume(bool(np.abs(values).min(initial=np.inf) > KINK_MARGIN))
