"""A deliberately wrong user max_pool2d: with ceil_mode it sizes the output by the bare
ceiling, out = ceil((n + 2p - d(k-1) - 1) / s) + 1, and forgets the rule that the last
window must start inside the input or the left padding (torch and the reference drop a last
window that would start in the right padding). The extra window it keeps holds no element of
the input, so it gives what a naive scan from -inf gives there: -inf, index -1. Everything
else delegates to the reference, so only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "ceil-mode-overhang"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    return value, value


def max_pool2d(
    input: np.ndarray,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    result = reference.max_pool2d(
        input, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )
    if not ceil_mode:
        return result
    values, indices = result if return_indices else (result, None)
    kernel = _pair(kernel_size)
    empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    strides = kernel if empty else _pair(stride)
    extra = [(0, 0)] * (values.ndim - 2)
    for n, o, k, s, p, d in zip(
        np.shape(input)[-2:],
        values.shape[-2:],
        kernel,
        strides,
        _pair(padding),
        _pair(dilation),
        strict=True,
    ):
        naive = (n + 2 * p - d * (k - 1) - 1 + s - 1) // s + 1  # the bug: no last-window rule
        extra.append((0, naive - o))
    if not any(after for _, after in extra):
        return result
    values = np.pad(values, extra, constant_values=-np.inf)  # the max of no element
    if indices is None:
        return values
    return values, np.pad(indices, extra, constant_values=-1)
