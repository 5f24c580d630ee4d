"""A test implementation: the reference's conv2d and conv1d, except that a conv2d call with
stride 3 on some axis kills its process (SIGSEGV, by reading address 0) and a conv1d call
with dilation 3 never returns. The campaign must judge both (verdicts crash and hang), shrink
each to a minimal example and write a repro that reproduces it."""

from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np

import reference

name = "crashing"


def _has_three(value: Any) -> bool:
    return 3 in (tuple(value) if isinstance(value, (tuple, list)) else (value,))


def conv2d(input: np.ndarray, weight: np.ndarray, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1,
           padding_mode: str = "zeros") -> np.ndarray:  # fmt: skip
    if _has_three(stride):
        ctypes.string_at(0)  # a read of address 0: SIGSEGV
    return reference.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv1d(input: np.ndarray, weight: np.ndarray, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1,
           padding_mode: str = "zeros") -> np.ndarray:  # fmt: skip
    if _has_three(dilation):
        while True:
            time.sleep(60)
    return reference.conv1d(input, weight, bias, stride, padding, dilation, groups, padding_mode)
