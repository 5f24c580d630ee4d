"""A deliberately wrong user implementation: torch everywhere, except a 1x1 convolution of
stride > 1, which takes a "fast path" (subsample, then a 1x1 convolution of stride 1) that
starts at the wrong offset: the last pixel of each stride instead of the first. Every other
call, its backward included, is torch's own, so only that layer kind can fail. In a ResNet
the first such layer is the projection shortcut of stage 2's first block."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.implementations.torch_eager import TorchImplementation

name = "strided-pointwise-offset"
_torch = TorchImplementation()


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
    strides = stride if isinstance(stride, tuple) else (stride, stride)
    if weight.shape[2:] == (1, 1) and padding in (0, (0, 0)) and max(strides) > 1:
        rows, columns = strides
        sampled = np.ascontiguousarray(input[..., rows - 1 :: rows, columns - 1 :: columns])
        config = {"dilation": dilation, "groups": groups, "padding_mode": padding_mode}
        return _torch.conv2d(sampled, weight, bias, **config)
    return _torch.conv2d(
        input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode,
    )  # fmt: skip


def __getattr__(attribute: str) -> Any:
    """Every other op (and conv2d_backward) is torch's."""
    return getattr(_torch, attribute)
