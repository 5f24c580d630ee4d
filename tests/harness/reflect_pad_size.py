"""A deliberately wrong user conv2d: its reflect padding is NumPy's ``np.pad(mode="reflect")``,
which mirrors again past the edge where torch and the reference require padding smaller than
the input (pad == size has no element left to mirror: torch raises). It agrees with torch on
every valid call and answers an invalid one. Everything else delegates to the reference, so
only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "reflect-pads-any-size"


def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    if padding_mode != "reflect" or isinstance(padding, str):
        return reference.conv2d(
            input, weight, bias, stride, padding, dilation, groups, padding_mode
        )
    pads = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    widths = [(0, 0)] * (input.ndim - 2) + [(p, p) for p in pads]
    padded = np.pad(input, widths, mode="reflect")  # the bug: no check that p < size
    return reference.conv2d(padded, weight, bias, stride, 0, dilation, groups)
