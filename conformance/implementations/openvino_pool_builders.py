"""The pooling and patch models of the openvino adapter: MaxPool-14 (values and indices),
AvgPool-16, AdaptiveAvgPool-8 / AdaptiveMaxPool-8, Col2Im-15 (fold) and
ExtractImagePatches-3 (unfold), with torch's semantics checked against OpenVINO's (see
openvino_builders).

ceil_mode is MaxPool-14's and AvgPool-14/16's ``rounding_type="ceil_torch"``: the output
size rounds up, and a last window that would start in the right padding is dropped (torch's
rule: the last window must start inside the input or the left padding). Plain ``"ceil"``
keeps such a window (of padding alone: -FLT_MAX in MaxPool), so it is never used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.catalogue.chains import chain_pooling, conv_spatial
from conformance.implementations import Unsupported
from conformance.implementations.openvino_builders import (
    Arrays,
    Parameters,
    add_bias,
    batched,
    conv_pads,
    convolution,
    finish,
    ints,
    per_axis,
)
from conformance.implementations.openvino_graph import Graph, Value


def _window(config: Mapping[str, Any], dims: int) -> dict[str, Any]:
    kernel = per_axis(config["kernel_size"], dims)
    stride = config.get("stride")
    padding = per_axis(config.get("padding", 0), dims)
    return {
        "strides": kernel if stride is None or stride == () else per_axis(stride, dims),
        "pads_begin": padding,
        "pads_end": list(padding),
        "kernel_shape": kernel,
        "rounding_type": "ceil_torch" if config.get("ceil_mode", False) else "floor",
        "auto_pad": "explicit",
    }


def _check_fits(x: Any, window: Mapping[str, Any], dilation: list[int], dims: int) -> None:
    """OpenVINO's pooling shape inference requires the dilated kernel to fit the padded
    input ("Kernel after dilation has size ... larger than the data shape after padding");
    torch accepts a larger kernel where ceil_mode still gives a window (its windows are
    clipped to the input): such a call is not expressible. One torch rejects is left to
    OpenVINO to reject."""
    rows = zip(
        x.shape[-dims:],
        window["kernel_shape"],
        window["strides"],
        window["pads_begin"],
        dilation,
        strict=True,
    )
    too_large = False
    for size, k, s, p, d in rows:
        span = size + 2 * p - d * (k - 1) - 1
        if s <= 0:
            return
        ceil = window["rounding_type"] == "ceil_torch"
        windows = (-(-span // s) if ceil else span // s) + 1
        if ceil and (windows - 1) * s >= size + p:
            windows -= 1
        if windows < 1:
            return  # torch rejects it as well
        too_large |= d * (k - 1) + 1 > size + 2 * p
    if too_large:
        raise Unsupported(
            "kernel larger than the padded input with ceil_mode: torch clips the window to "
            "the input; OpenVINO's pooling requires the (dilated) kernel to fit the padded input"
        )


def _input(graph: Graph, arrays: Arrays, params: Parameters, dims: int) -> tuple[Value, bool]:
    x_array, x = arrays["input"], params["input"]
    assert x_array is not None and x is not None
    return batched(graph, x, x_array, dims)


def max_pool(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping, dims: int) -> None:
    """MaxPool-14 with ``axis=2``: its indices are flat over each (n, c) plane's spatial
    dims, torch's; int64 (``index_element_type``)."""
    indices = bool(config.get("return_indices", False))
    if indices and graph.dtype == "bfloat16":
        raise Unsupported(
            "return_indices in bfloat16: the CPU plugin's MaxPool kernel has one output; with "
            "the indices it falls back to the reference evaluate(), which has no bf16"
        )
    window, dilation = _window(config, dims), per_axis(config.get("dilation", 1), dims)
    _check_fits(arrays["input"], window, dilation, dims)
    x, unbatched = _input(graph, arrays, params, dims)
    node = graph.node("max_pool", x, dilations=dilation, index_element_type="i64", axis=2, **window)
    finish(graph, "output", graph.output(node, 0), unbatched)
    if indices:
        finish(graph, "indices", graph.output(node, 1), unbatched, index=True)


def conv_max_pool(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """Convolution (or GroupConvolution) and its bias as conv builds them, then MaxPool-14 of
    its output as max_pool does; the arrays are graph inputs, as in conv (whether to fuse the
    pair is the plugin's choice)."""
    x_array, weight_array = arrays["input"], arrays["weight"]
    assert x_array is not None and weight_array is not None
    pooling = chain_pooling(config)
    window, dilation = _window(pooling, 2), per_axis(pooling["dilation"], 2)
    spatial = conv_spatial(x_array.shape, weight_array.shape, config)
    _check_fits(np.empty(spatial), window, dilation, 2)
    x, unbatched = _input(graph, arrays, params, 2)
    conv_dilation = per_axis(config.get("dilation", 1), 2)
    begin, end = conv_pads(config.get("padding", 0), weight_array.shape[2:], conv_dilation)
    y = convolution(
        graph,
        x,
        params["weight"],  # type: ignore[arg-type]
        weight_array.shape,
        int(config.get("groups", 1)),
        per_axis(config.get("stride", 1), 2),
        begin,
        end,
        conv_dilation,
    )
    c = add_bias(graph, y, params["bias"], 2, int(weight_array.shape[0]))
    node = graph.node("max_pool", c, dilations=dilation, index_element_type="i64", axis=2, **window)
    finish(graph, "output", graph.output(node, 0), unbatched)


def avg_pool(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping, dims: int) -> None:
    """AvgPool-16, ``exclude_pad = not count_include_pad``. torch's divisor_override has no
    OpenVINO attribute. Dilations are given (all 1, torch's avg_pool has none): AvgPool-16
    built without them (the Python API's default, dilations=None) crashes the CPU plugin."""
    if config.get("divisor_override") is not None:
        raise Unsupported("divisor_override: OpenVINO's AvgPool has no fixed divisor")
    window = _window(config, dims)
    _check_fits(arrays["input"], window, [1] * dims, dims)
    x, unbatched = _input(graph, arrays, params, dims)
    node = graph.node(
        "avg_pool",
        x,
        exclude_pad=not config.get("count_include_pad", True),
        dilations=[1] * dims,
        **window,
    )
    finish(graph, "output", node, unbatched)


def _output_shape(arrays: Arrays, config: Mapping[str, Any], dims: int) -> list[int]:
    x_array = arrays["input"]
    assert x_array is not None
    wanted = config["output_size"]
    sizes = [wanted] * dims if isinstance(wanted, int) else list(wanted)
    spatial = x_array.shape[-dims:]
    return [int(size if out is None else out) for out, size in zip(sizes, spatial, strict=True)]


def adaptive_pool(
    graph: Graph, arrays: Arrays, params: Parameters, config: Mapping, dims: int, kind: str
) -> None:
    """AdaptiveAvgPool-8 / AdaptiveMaxPool-8: the windows [floor(i*in/out),
    ceil((i+1)*in/out)), torch's. AdaptiveMaxPool's indices are i32 (the CPU plugin rejects
    the i64 default: "does not support i64 for use with oneDNN"), converted to int64."""
    x, unbatched = _input(graph, arrays, params, dims)
    shape = ints(_output_shape(arrays, config, dims))
    if kind == "avg":
        finish(graph, "output", graph.node("adaptive_avg_pool", x, shape), unbatched)
        return
    node = graph.node("adaptive_max_pool", x, shape, index_element_type="i32")
    finish(graph, "output", graph.output(node, 0), unbatched)
    if config.get("return_indices", False):
        indices = graph.node("convert", graph.output(node, 1), "i64")
        finish(graph, "indices", indices, unbatched, index=True)


def fold(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """Col2Im-15: the sum of each block's values into the image, torch's fold."""
    columns = arrays["input"]
    assert columns is not None
    x, unbatched = batched(graph, params["input"], columns, 1)  # type: ignore[arg-type]
    node = graph.node(
        "col2im",
        x,
        ints(per_axis(config["output_size"], 2)),
        ints(per_axis(config["kernel_size"], 2)),
        strides=per_axis(config.get("stride", 1), 2),
        dilations=per_axis(config.get("dilation", 1), 2),
        pads_begin=per_axis(config.get("padding", 0), 2),
        pads_end=per_axis(config.get("padding", 0), 2),
    )
    finish(graph, "output", node, unbatched)


def unfold(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """Zero padding (Pad), then ExtractImagePatches-3 ('valid'): its (N, kh*kw*C, OH, OW)
    holds each block's values in (kh, kw, C) order; a Reshape, Transpose, Reshape give
    torch's (N, C*kh*kw, L) in (C, kh, kw) order. Data movement only: exact."""
    x, unbatched = _input(graph, arrays, params, 2)
    x_array = arrays["input"]
    assert x_array is not None
    kernel = per_axis(config["kernel_size"], 2)
    dilation = per_axis(config.get("dilation", 1), 2)
    padding = per_axis(config.get("padding", 0), 2)
    stride = per_axis(config.get("stride", 1), 2)
    if any(padding):
        x = graph.node("pad", x, ints([0, 0, *padding]), ints([0, 0, *padding]), "constant")
    batch = 1 if unbatched else int(x_array.shape[0])
    channels = int(x_array.shape[-3])
    blocks = 1
    for size, k, d, p, s in zip(x_array.shape[-2:], kernel, dilation, padding, stride, strict=True):
        blocks *= (size + 2 * p - d * (k - 1) - 1) // s + 1
    taps = kernel[0] * kernel[1]
    patches = graph.node("extract_image_patches", x, kernel, stride, dilation, "valid")
    split = graph.node("reshape", patches, ints([batch, taps, channels, blocks]), False)
    moved = graph.node("transpose", split, ints([0, 2, 1, 3]))
    y = graph.node("reshape", moved, ints([batch, channels * taps, blocks]), False)
    finish(graph, "output", y, unbatched)
