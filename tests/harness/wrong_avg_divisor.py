"""A deliberately wrong user avg_pool2d: with count_include_pad and ceil_mode it divides by
the whole kernel area, counting the part of the last window that hangs past the right
padding (torch and the reference clip the window to the padded input before counting).
Everything else delegates to the reference, so only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "avg-divisor-overhang"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    return value, value


def avg_pool2d(
    input: np.ndarray,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    right = reference.avg_pool2d(
        input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    if not (ceil_mode and count_include_pad and divisor_override is None):
        return right
    kernel = _pair(kernel_size)
    empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    strides = kernel if empty else _pair(stride)
    overhang = False
    for n, o, k, s, p in zip(
        np.shape(input)[-2:], right.shape[-2:], kernel, strides, _pair(padding), strict=True
    ):
        overhang |= (o - 1) * s - p + k > n + p  # the last window passes the right padding
    if not overhang:
        return right
    sums = reference.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, True, 1)
    divisor = np.full(right.shape[-2:], float(kernel[0] * kernel[1]))  # the bug: never clipped
    return (sums / divisor).astype(right.dtype)
