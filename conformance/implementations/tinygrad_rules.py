"""What the tinygrad adapter declares Unsupported, per example, and why.

Features tinygrad lacks: avg_pool2d has no divisor_override; nn.BatchNorm has no cumulative
moving average (momentum=None) and tracks both running statistics or neither. A semantic
difference: where a max pooling window holds its maximum more than once, tinygrad's gradient
of max (mixin/gradient.py, reduce_gradient: mask / mask.sum()) divides the window's gradient
equally among the tied elements (and the -inf padding, when the maximum is -inf), where
torch gives all of it to the first; both are subgradients, so the gradient of such an
example is declared unsupported (``max_pool_ties``). Calls that
break one of torch's argument rules but mean something else to tinygrad (a negative padding
crops) are counted unsupported by the harness itself (``validates_like_torch = False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _per_dim(value: Any, dims: int) -> tuple[int, ...]:
    return (
        tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * dims
    )


def max_pool_ties(input: np.ndarray, config: Mapping[str, Any], dims: int) -> bool:
    """Whether some window of this max pooling holds its maximum more than once, counted as
    tinygrad counts it: over the window padded with -inf (torch's window geometry; a NaN
    maximum equals nothing)."""
    if input.size == 0:
        return False
    kernel = _per_dim(config["kernel_size"], dims)
    stride = config.get("stride")
    strides = kernel if stride is None else _per_dim(stride, dims)
    rows = zip(
        input.shape[-dims:],
        kernel,
        strides,
        _per_dim(config.get("padding", 0), dims),
        _per_dim(config.get("dilation", 1), dims),
        strict=True,
    )
    pads, windows = [], []
    for length, k, s, p, d in rows:
        if min(k, s, d) <= 0 or p < 0:
            return False  # an invalid call: tinygrad's own rules decide
        span = d * (k - 1) + 1
        room = length + 2 * p - span
        out = (-(-room // s) if config.get("ceil_mode") else room // s) + 1
        if config.get("ceil_mode") and (out - 1) * s >= length + p:
            out -= 1  # torch drops a last window that starts in the right padding
        if out < 1:
            return False
        pads.append((p, max(p, (out - 1) * s + span - length - p)))
        windows.append(np.arange(out)[:, None] * s + np.arange(k)[None, :] * d)
    lead = input.ndim - dims
    values = np.pad(input.astype(np.float64), [(0, 0)] * lead + pads, constant_values=-np.inf)
    for axis in reversed(range(dims)):  # axis -> (windows, taps), the later axes already split
        at = lead + axis
        index = windows[axis]
        values = np.take(values, index.ravel(), axis=at)
        values = values.reshape(*values.shape[:at], *index.shape, *values.shape[at + 1 :])
    taps = tuple(lead + 2 * axis + 1 for axis in range(dims))
    with np.errstate(invalid="ignore"):
        maxima = values.max(axis=taps, keepdims=True)
        return bool(((values == maxima).sum(axis=taps) > 1).any())


def unsupported_reason(
    op: str, arrays: Sequence[np.ndarray | None], config: Mapping[str, Any], direction: str
) -> str | None:
    """Why the tinygrad adapter cannot express this example, or None."""
    if (
        "max_pool" in op
        and direction == "backward"
        and arrays[0] is not None
        and max_pool_ties(arrays[0], config, int(op[-2]))
    ):
        return (
            "a tie for a window's maximum: tinygrad's gradient of max divides the window's "
            "gradient among the tied elements (the -inf padding too, for a -inf maximum); "
            "torch gives it all to the first"
        )
    if "avg_pool" in op and config.get("divisor_override") is not None:
        return "divisor_override: tinygrad's Tensor.avg_pool2d has no such argument"
    if op == "batch_norm":
        if "momentum" in config and config["momentum"] is None:
            return (
                "momentum=None (a cumulative moving average): tinygrad's nn.BatchNorm has "
                "only the exponential one"
            )
        if (arrays[1] is None) != (arrays[2] is None):
            return (
                "one running statistic without the other: tinygrad's nn.BatchNorm tracks "
                "both or neither"
            )
    return None
