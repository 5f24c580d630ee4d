"""A deliberately wrong user max_pool2d: an omitted stride defaults to 1 instead of the
kernel size (torch's default, stride = kernel_size). Every call that passes a stride is
right. Everything else delegates to the reference, so only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "pool-stride-defaults-to-one"


def max_pool2d(
    input: np.ndarray,
    kernel_size: Any,
    stride: Any = 1,  # the bug: torch's default is None, meaning kernel_size
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    return reference.max_pool2d(
        input, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )
