"""A test implementation whose answer depends on the call made before it: the reference's
conv2d, but a call whose input has a different number of channels than the previous call's
adds 1 to its output (a stale buffer, as a cache keyed on the wrong thing would give). Alone,
in a fresh process, every call is right; the campaign must report such a failure as
history-dependent, with the calls before it as a replayable sequence."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "history_dependent"
_previous_channels: list[int] = []


def conv2d(input: np.ndarray, weight: np.ndarray, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1,
           padding_mode: str = "zeros") -> np.ndarray:  # fmt: skip
    output = reference.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode)
    channels = input.shape[-3]
    stale = bool(_previous_channels) and _previous_channels[-1] != channels
    _previous_channels[:] = [channels]
    return output + 1 if stale else output
