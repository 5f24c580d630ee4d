"""conv_max_pool's config split the way every side of the suite needs it (its bound, the
adapters that build the chain from a convolution and a pooling): the pooling's keywords
under max_pool2d's names, with the reference's defaults, and the convolution's output size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reference.shapes import conv_output_size

# conv_max_pool's pooling knobs (the rest of its config is conv2d's)
POOL_KNOBS = ("pool_kernel_size", "pool_stride", "pool_padding", "pool_dilation", "ceil_mode")


def chain_pooling(config: Mapping[str, Any]) -> dict[str, Any]:
    """conv_max_pool's pooling as max_pool2d's keywords (kernel_size, stride, padding,
    dilation, ceil_mode, in that order), the reference's defaults where the call left one out."""
    return {
        "kernel_size": config.get("pool_kernel_size", 2),
        "stride": config.get("pool_stride"),
        "padding": config.get("pool_padding", 0),
        "dilation": config.get("pool_dilation", 1),
        "ceil_mode": config.get("ceil_mode", False),
    }


def chain_conv(config: Mapping[str, Any]) -> dict[str, Any]:
    """conv_max_pool's convolution keywords: its config without the pooling's."""
    return {k: v for k, v in config.items() if k not in POOL_KNOBS}


def conv_spatial(
    x_shape: Sequence[int], weight_shape: Sequence[int], config: Mapping[str, Any]
) -> list[int]:
    """A 2-d convolution's output size, torch's ('same' keeps the input's)."""
    padding = config.get("padding", 0)
    if padding == "same":
        return list(x_shape[-2:])
    size = conv_output_size(
        tuple(x_shape[-2:]),
        tuple(weight_shape[2:]),
        config.get("stride", 1),
        0 if padding == "valid" else padding,
        config.get("dilation", 1),
    )
    return list(size) if isinstance(size, tuple) else [size, size]
