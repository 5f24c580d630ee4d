"""One small OpenVINO model per catalogue call: torch.nn.functional's semantics as opset16
nodes (openvino_graph records them). Operator semantics: the OpenVINO operation
specifications ("Operation Specifications", docs.openvino.ai, opset16).

Each builder gets the graph, the call's arrays (for their shapes), a Parameter per array
that is present, and the config; it adds the nodes and the results. An unbatched input gets
its batch axis from an Unsqueeze and loses it again by a Squeeze, inside the model. Where
OpenVINO cannot express a call it raises ``Unsupported`` naming the difference; torch's
argument rules are left to OpenVINO (the adapter declares ``validates_like_torch = False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conformance.implementations import Unsupported
from conformance.implementations.openvino_graph import ELEMENT_TYPES, Graph, Value

Arrays = Mapping[str, np.ndarray | None]
Parameters = Mapping[str, Value | None]

# torch's padding_mode -> Pad-12's pad_mode ('circular' has none: Slice and Concat)
PAD_MODES = {"reflect": "reflect", "replicate": "edge"}


def per_axis(value: Any, dims: int) -> list[int]:
    if isinstance(value, (int, np.integer)):
        return [int(value)] * dims
    values = [int(v) for v in value]
    return values * dims if len(values) == 1 else values


def ints(values: Sequence[int]) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=np.int64)


def batched(graph: Graph, value: Value, array: np.ndarray, dims: int) -> tuple[Value, bool]:
    """The data input with a batch axis: torch's unbatched (C, *spatial) gets one."""
    if array.ndim == dims + 1:
        return graph.node("unsqueeze", value, ints([0])), True
    return value, False


def finish(graph: Graph, name: str, value: Value, unbatched: bool, index: bool = False) -> None:
    if unbatched:
        value = graph.node("squeeze", value, ints([0]))
    graph.result(name, value, index)


def conv_pads(
    padding: Any, kernel: Sequence[int], dilation: Sequence[int]
) -> tuple[list[int], list[int]]:
    """(begin, end) from torch's padding: 'valid' is 0; 'same' is d*(k-1) in all, the odd
    extra pad at the end (torch's _conv_forward: left = total // 2)."""
    dims = len(kernel)
    if padding == "valid":
        return [0] * dims, [0] * dims
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [t // 2 for t in totals], [t - t // 2 for t in totals]
    pads = per_axis(padding, dims)
    return pads, list(pads)


def padded(
    graph: Graph,
    x: Value,
    spatial: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    mode: str,
) -> Value:
    """torch's non-zero padding modes, exactly: reflect and replicate are Pad's reflect and
    edge (the same index maps); circular is, per axis, the last ``begin`` elements, the input
    and its first ``end`` elements concatenated (torch's circular pad, pad <= size)."""
    if mode in PAD_MODES:
        pads_begin, pads_end = ints([0, 0, *begin]), ints([0, 0, *end])
        return graph.node("pad", x, pads_begin, pads_end, PAD_MODES[mode])
    if mode != "circular":
        raise Unsupported(f"padding_mode={mode!r}")
    for axis, (size, before, after) in enumerate(zip(spatial, begin, end, strict=True), 2):
        if before == after == 0:
            continue
        pieces = []
        if before:
            pieces.append(
                graph.node("slice", x, ints([size - before]), ints([size]), ints([1]), ints([axis]))
            )
        pieces.append(x)
        if after:
            pieces.append(graph.node("slice", x, ints([0]), ints([after]), ints([1]), ints([axis])))
        x = graph.node("concat", pieces, axis)
        size += before + after
    return x


def add_bias(graph: Graph, y: Value, bias: Value | None, dims: int, channels: int) -> Value:
    """y + bias per output channel: the bias reshaped to (1, channels, 1, ...), which a bias
    of another length cannot be (no broadcasting of a length-1 bias, as torch)."""
    if bias is None:
        return y
    shaped = graph.node("reshape", bias, ints([1, channels, *([1] * dims)]), False)
    return graph.node("add", y, shaped)


def grouped(graph: Graph, weight: Value, shape: Sequence[int], groups: int) -> Value:
    """torch's (out, in/g, *k) as GroupConvolution's (g, out/g, in/g, *k); a transposed
    weight (in, out/g, *k) as GroupConvolutionBackpropData's (g, in/g, out/g, *k)."""
    leading = shape[0] // groups
    return graph.node("reshape", weight, ints([groups, leading, *shape[1:]]), False)


def convolution(
    graph: Graph,
    x: Value,
    weight: Value,
    weight_shape: Sequence[int],
    groups: int,
    stride: list[int],
    begin: list[int],
    end: list[int],
    dilation: list[int],
) -> Value:
    attributes = {
        "strides": stride,
        "pads_begin": begin,
        "pads_end": end,
        "dilations": dilation,
        "auto_pad": "explicit",
    }
    if groups == 1:
        return graph.node("convolution", x, weight, **attributes)
    kernel = grouped(graph, weight, weight_shape, groups)
    return graph.node("group_convolution", x, kernel, **attributes)


def conv(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping, dims: int) -> None:
    """Convolution / GroupConvolution; a non-zero padding_mode pads first (Pad, or Slice and
    Concat), then convolves without padding: an exact composition."""
    x_array, weight_array = arrays["input"], arrays["weight"]
    assert x_array is not None and weight_array is not None
    x, unbatched = batched(graph, params["input"], x_array, dims)  # type: ignore[arg-type]
    dilation = per_axis(config.get("dilation", 1), dims)
    begin, end = conv_pads(config.get("padding", 0), weight_array.shape[2:], dilation)
    mode = config.get("padding_mode", "zeros")
    if mode != "zeros" and any(begin + end):
        x = padded(graph, x, x_array.shape[-dims:], begin, end, mode)
        begin, end = [0] * dims, [0] * dims
    y = convolution(
        graph,
        x,
        params["weight"],  # type: ignore[arg-type]
        weight_array.shape,
        int(config.get("groups", 1)),
        per_axis(config.get("stride", 1), dims),
        begin,
        end,
        dilation,
    )
    channels = int(weight_array.shape[0])
    finish(graph, "output", add_bias(graph, y, params["bias"], dims, channels), unbatched)


def conv_transpose(
    graph: Graph, arrays: Arrays, params: Parameters, config: Mapping, dims: int
) -> None:
    """ConvolutionBackpropData: output size stride*(in-1) + dilation*(k-1) + 1 - pads_begin -
    pads_end + output_padding, torch's with pads_begin = pads_end = padding."""
    x_array, weight_array = arrays["input"], arrays["weight"]
    assert x_array is not None and weight_array is not None
    x, unbatched = batched(graph, params["input"], x_array, dims)  # type: ignore[arg-type]
    padding = per_axis(config.get("padding", 0), dims)
    groups = int(config.get("groups", 1))
    attributes = {
        "strides": per_axis(config.get("stride", 1), dims),
        "pads_begin": padding,
        "pads_end": list(padding),
        "dilations": per_axis(config.get("dilation", 1), dims),
        "auto_pad": "explicit",
        "output_padding": per_axis(config.get("output_padding", 0), dims),
    }
    weight: Value = params["weight"]  # type: ignore[assignment]
    if groups == 1:
        y = graph.node("convolution_backprop_data", x, weight, **attributes)
    else:
        kernel = grouped(graph, weight, weight_array.shape, groups)
        y = graph.node("group_convolution_backprop_data", x, kernel, **attributes)
    channels = int(weight_array.shape[1]) * groups
    finish(graph, "output", add_bias(graph, y, params["bias"], dims, channels), unbatched)


def conv_transpose_conv(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """ConvolutionBackpropData and its bias as conv_transpose builds them, then Convolution
    (stride 1, padding conv_padding) and its bias as conv does; the arrays graph inputs."""
    x_array, up_array = arrays["input"], arrays["transpose_weight"]
    down_array = arrays["conv_weight"]
    assert x_array is not None and up_array is not None and down_array is not None
    x, unbatched = batched(graph, params["input"], x_array, 2)  # type: ignore[arg-type]
    padding = per_axis(config.get("padding", 0), 2)
    h = graph.node(
        "convolution_backprop_data",
        x,
        params["transpose_weight"],
        strides=per_axis(config.get("stride", 1), 2),
        pads_begin=padding,
        pads_end=list(padding),
        dilations=per_axis(config.get("dilation", 1), 2),
        auto_pad="explicit",
        output_padding=per_axis(config.get("output_padding", 0), 2),
    )
    mid = int(up_array.shape[1])
    h = add_bias(graph, h, params["transpose_bias"], 2, mid)
    begin, end = conv_pads(config.get("conv_padding", 0), down_array.shape[2:], [1, 1])
    y = convolution(
        graph,
        h,
        params["conv_weight"],  # type: ignore[arg-type]
        down_array.shape,
        1,
        [1, 1],
        begin,
        end,
        [1, 1],
    )
    channels = int(down_array.shape[0])
    finish(graph, "output", add_bias(graph, y, params["conv_bias"], 2, channels), unbatched)


def patch_embedding(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """Convolution with stride = kernel = patch (a trailing remainder is dropped by both)."""
    weight_array = arrays["weight"]
    assert weight_array is not None
    conv(graph, arrays, params, {"stride": list(weight_array.shape[2:])}, 2)


def depthwise_separable_conv(
    graph: Graph, arrays: Arrays, params: Parameters, config: Mapping
) -> None:
    """GroupConvolution (groups = channels, torch's padding incl. 'same'), then a 1x1
    Convolution, each with its bias."""
    x_array, depthwise = arrays["input"], arrays["depthwise_weight"]
    assert x_array is not None and depthwise is not None
    x, unbatched = batched(graph, params["input"], x_array, 2)  # type: ignore[arg-type]
    dilation = per_axis(config.get("dilation", 1), 2)
    begin, end = conv_pads(config.get("padding", 0), depthwise.shape[2:], dilation)
    stride = per_axis(config.get("stride", 1), 2)
    groups = int(x_array.shape[-3])
    depthwise_weight: Value = params["depthwise_weight"]  # type: ignore[assignment]
    hidden = convolution(
        graph, x, depthwise_weight, depthwise.shape, groups, stride, begin, end, dilation
    )
    hidden = add_bias(graph, hidden, params["depthwise_bias"], 2, int(depthwise.shape[0]))
    pointwise: Value = params["pointwise_weight"]  # type: ignore[assignment]
    y = convolution(graph, hidden, pointwise, (), 1, [1, 1], [0, 0], [0, 0], [1, 1])
    pointwise_shape = arrays["pointwise_weight"].shape  # type: ignore[union-attr]
    channels = int(pointwise_shape[0])
    finish(graph, "output", add_bias(graph, y, params["pointwise_bias"], 2, channels), unbatched)


def batch_norm(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """BatchNormInference on the running statistics (eval). OpenVINO is an inference engine:
    it has no batch normalization over the batch's own statistics (training mode)."""
    x_array = arrays["input"]
    assert x_array is not None
    if config.get("training", False):
        raise Unsupported(
            "training=True: OpenVINO's BatchNormInference normalizes with given statistics; "
            "it has no batch-statistics (training) mode"
        )
    if params["running_mean"] is None or params["running_var"] is None:
        raise Unsupported("eval without running statistics: BatchNormInference needs them")
    channels = int(x_array.shape[1])
    short = ELEMENT_TYPES[graph.dtype]

    def given(name: str, fill: float) -> Value:
        value = params[name]
        if value is not None:
            return value
        # 1.0 and 0.0 convert exactly to every dtype
        return graph.node("convert", np.full(channels, fill, dtype=np.float32), short)

    y = graph.node(
        "batch_norm_inference",
        params["input"],
        given("weight", 1.0),
        given("bias", 0.0),
        params["running_mean"],
        params["running_var"],
        float(config.get("eps", 1e-5)),
    )
    graph.result("output", y)


def conv_bn_relu(graph: Graph, arrays: Arrays, params: Parameters, config: Mapping) -> None:
    """Convolution (or GroupConvolution) -> BatchNormInference -> Relu, the weights, bias and
    batch-norm parameters constants (an inference model's weights, not inputs), so that the
    CPU plugin's transformations may fold the batch norm into the convolution and fuse the
    Relu: the graph says what to compute, the plugin decides how. bfloat16 constants are
    written as float32 (which holds them exactly) and converted; an absent bn_weight is a
    scale of ones, an absent bn_bias a shift of zeros (torch's meaning)."""
    x_array, weight_array = arrays["input"], arrays["weight"]
    assert x_array is not None and weight_array is not None
    x, unbatched = batched(graph, params["input"], x_array, 2)  # type: ignore[arg-type]
    short = ELEMENT_TYPES[graph.dtype]
    channels = int(weight_array.shape[0])

    def constant(name: str, fill: float = 0.0) -> Value:
        array = arrays.get(name)
        value = np.full(channels, fill) if array is None else np.asarray(array)
        held = value.astype(np.float32) if graph.dtype != "float64" else value
        return graph.node("convert", held, short)

    dilation = per_axis(config.get("dilation", 1), 2)
    begin, end = conv_pads(config.get("padding", 0), weight_array.shape[2:], dilation)
    groups, stride = int(config.get("groups", 1)), per_axis(config.get("stride", 1), 2)
    weight = constant("weight")
    y = convolution(graph, x, weight, weight_array.shape, groups, stride, begin, end, dilation)
    if arrays.get("bias") is not None:
        y = add_bias(graph, y, constant("bias"), 2, channels)
    z = graph.node(
        "batch_norm_inference",
        y,
        constant("bn_weight", 1.0),
        constant("bn_bias", 0.0),
        constant("running_mean"),
        constant("running_var"),
        float(config.get("eps", 1e-5)),
    )
    finish(graph, "output", graph.node("relu", z), unbatched)
