"""What the jax adapter declares Unsupported, per example, and why.

Two kinds: features JAX lacks (pooling with argmax indices; the gradient of a dilated max
reduce_window, which jax 0.10 refuses with NotImplementedError), and calls that break one of
torch's argument rules where lax has a rule of its own instead of an error (negative padding
crops, 'SAME' is defined for strides, reduce_window pads any amount and returns no windows
for a kernel past the input): there jax's answer is an answer to another question, so the
example is not judged against torch's rejection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.chains import chain_pooling, conv_spatial


def _per_dim(value: Any, dims: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _conv_reason(op: str, weight: np.ndarray, config: Mapping[str, Any]) -> str | None:
    dims = weight.ndim - 2
    padding = config.get("padding", 0)
    if padding == "same" and any(s > 1 for s in _per_dim(config.get("stride", 1), dims)):
        return (
            "padding='same' with stride > 1: torch rejects it; lax defines 'SAME' for any "
            "stride (TensorFlow's rule)"
        )
    if not isinstance(padding, str) and any(p < 0 for p in _per_dim(padding, dims)):
        return "negative padding: torch rejects it; lax reads it as cropping the input"
    if op.startswith("conv_transpose"):
        rows = zip(
            _per_dim(config.get("output_padding", 0), dims),
            _per_dim(config.get("stride", 1), dims),
            _per_dim(config.get("dilation", 1), dims),
            strict=True,
        )
        if any(extra >= s and extra >= d for extra, s, d in rows):
            return (
                "output_padding >= stride and dilation: torch rejects it; lax pads the "
                "output by any amount"
            )
    return None


def _window_reason(
    op: str, input: np.ndarray, config: Mapping[str, Any], direction: str
) -> str | None:
    dims = 2 if op in ("unfold", "fold") else int(op[-2])
    kernel = _per_dim(config["kernel_size"], dims)
    padding = _per_dim(config.get("padding", 0), dims)
    if any(p < 0 for p in padding):
        return "negative padding: torch rejects it; lax reads it as cropping the input"
    if (
        "pool" in op
        and not op.startswith("lp")
        and any(p > k // 2 for p, k in zip(padding, kernel, strict=True))
    ):
        return (
            "padding over half the kernel: torch rejects it; reduce_window pads any amount "
            "(windows of padding alone)"
        )
    if op == "fold":
        return None
    if any(k <= 0 for k in kernel):
        return None  # lax rejects a window of size 0 itself
    stride = config.get("stride")
    strides = kernel if stride is None else _per_dim(stride, dims)
    dilation = _per_dim(config.get("dilation", 1), dims)
    ceil_mode = bool(config.get("ceil_mode", False))
    for size, k, s, p, d in zip(
        input.shape[-dims:], kernel, strides, padding, dilation, strict=True
    ):
        if s <= 0 or d <= 0:
            return None  # lax rejects these itself
        room = size + 2 * p - d * (k - 1) - 1
        windows = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (windows - 1) * s >= size + p:
            windows -= 1  # torch's rule: no last window that starts in the right padding
        if windows < 1:
            return (
                "kernel larger than the padded input: torch rejects it; lax returns no "
                "windows (an empty array)"
            )
    if direction == "backward" and "max_pool" in op and any(d > 1 for d in dilation):
        return (
            "the gradient of a dilated max pooling: jax has no VJP for max reduce_window "
            "with window dilation (NotImplementedError: 'VJP not implemented for "
            "select_and_gather (MaxPool) with window dilation')"
        )
    return None


def _chain_pool_reason(
    input: np.ndarray, weight: np.ndarray, config: Mapping[str, Any], direction: str
) -> str | None:
    """conv_max_pool's pooling, judged as max_pool2d's on the convolution's output."""
    try:
        spatial = conv_spatial(input.shape, weight.shape, config)
    except (ValueError, TypeError):
        return None  # a convolution torch rejects: jax's own answer is judged
    return _window_reason("max_pool2d", np.empty(spatial), chain_pooling(config), direction)


def unsupported_reason(
    op: str, arrays: Sequence[np.ndarray | None], config: Mapping[str, Any], direction: str
) -> str | None:
    """Why the jax adapter cannot express this example, or None."""
    if "max_pool" in op and config.get("return_indices") and direction == "forward":
        # (the backward is the gradient of the values alone, which jax has)
        return (
            "return_indices: jax.lax has no pooling that returns argmax indices "
            "(reduce_window yields values only)"
        )
    if op == "conv_max_pool" and arrays[0] is not None and arrays[1] is not None:
        return _conv_reason(op, arrays[1], config) or _chain_pool_reason(
            arrays[0], arrays[1], config, direction
        )
    if op.startswith("conv") and arrays[1] is not None:
        return _conv_reason(op, arrays[1], config)
    if "kernel_size" in config and arrays[0] is not None:
        return _window_reason(op, arrays[0], config, direction)
    eps = config.get("eps")
    if eps is not None and eps < 0:
        return "eps < 0: torch rejects it; the jnp formula computes rsqrt(var + eps) regardless"
    return None
