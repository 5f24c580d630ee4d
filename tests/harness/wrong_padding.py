"""A deliberately wrong user implementation: padding='same' with an even effective kernel
puts the odd extra zero at the start instead of the end (torch and the reference put it at
the end). Everything else delegates to the reference, so only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "wrong-same-padding"


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
    if padding == "same" and padding_mode == "zeros":
        dilations = dilation if isinstance(dilation, tuple) else (dilation, dilation)
        widths = [(0, 0)] * (input.ndim - 2)
        for kernel, step in zip(weight.shape[2:], dilations, strict=True):
            total = step * (kernel - 1)
            widths.append((total - total // 2, total // 2))  # the bug: extra at the start
        padded = np.pad(input, widths)
        return reference.conv2d(padded, weight, bias, stride, 0, dilation, groups)
    return reference.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode)
