"""One small ONNX graph per catalogue call: torch.nn.functional's semantics as ONNX nodes.

The builder returns a ``GraphPlan``: the nodes (op type, inputs, outputs, attributes), how
each graph input is fed from the call's arrays (a batch axis added to an unbatched input,
ones or zeros for an absent batch-norm weight or bias), and how each graph output becomes a
torch-shaped result (the batch axis removed; MaxPool's Indices made per (n, c) plane). The
same plan renders as Python source for repro snippets, so a snippet runs the very graph the
adapter ran. Where ONNX cannot express a call it raises ``Unsupported`` naming the
difference. Operator semantics: the ONNX operator specification, opset ``OPSET``
(``onnx.defs.get_schema(op).doc``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.implementations import Unsupported

# The newest opset whose every operator used here has a CPU kernel in onnxruntime 1.31.1
# (it loads models up to opset 26, but Conv, pools, BatchNormalization and Col2Im last
# changed at opset 22/15/18, and Pad's 'wrap' mode needs >= 19: 22 resolves all of them).
OPSET = 22
IR_VERSION = 10


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Feed:
    """A graph input: the call's array ``source`` (with a batch axis added if ``batch``), or
    ``fill`` repeated ``length`` times (an absent batch-norm weight/bias/statistic)."""

    name: str
    source: str | None
    batch: bool = False
    fill: float | None = None
    length: int = 0


@dataclass(frozen=True)
class Result:
    """A result: graph output ``output``, its batch axis removed if ``unbatch``; with
    ``plane_of`` (MaxPool Indices) ONNX's index flat over (N, C, *spatial) of the graph input
    ``plane_of`` becomes torch's index flat over each (n, c) plane (storage_order=0)."""

    name: str
    output: str
    unbatch: bool = False
    plane_of: str | None = None


@dataclass
class GraphPlan:
    nodes: list[Node]
    feeds: list[Feed]
    results: list[Result]
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # int64 initializers
    write_back: tuple[str, ...] = ()  # results copied into the caller's arrays (in place)
    # feeds baked into the model as initializers, not graph inputs: constant weights, which
    # a runtime's graph optimizer may fold (conv_bn_relu: batch norm into the Conv)
    initializers: tuple[str, ...] = ()


def per_axis(value: Any, dims: int) -> list[int]:
    if isinstance(value, (int, np.integer)):
        return [int(value)] * dims
    values = [int(v) for v in value]
    return values * dims if len(values) == 1 else values


def input_feed(x: np.ndarray, dims: int) -> tuple[Feed, bool]:
    """The data input, batched: (C, *spatial) gets a batch axis (torch's unbatched form)."""
    unbatched = x.ndim == dims + 1
    return Feed("X", "input", batch=unbatched), unbatched


def _optional(name: str, array: np.ndarray | None, source: str) -> list[Feed]:
    return [] if array is None else [Feed(name, source)]


def conv_pads(padding: Any, weight_shape: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """ONNX pads [begin..., end...] from torch's padding: 'valid' is 0; 'same' is d*(k-1) in
    all, the odd extra pad at the end (torch's _conv_forward: left = total // 2)."""
    dims = len(weight_shape) - 2
    if padding == "valid":
        return [0] * (2 * dims)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(weight_shape[2:], dilation, strict=True)]
        return [t // 2 for t in totals] + [t - t // 2 for t in totals]
    pads = per_axis(padding, dims)
    return pads + pads


PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def conv(arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int) -> GraphPlan:
    """Conv; padding_mode reflect/replicate/circular is a Pad node (reflect/edge/wrap, the
    same index maps as torch's) before a Conv without padding: an exact composition."""
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    feed, unbatched = input_feed(x, dims)
    dilation = per_axis(config.get("dilation", 1), dims)
    pads = conv_pads(config.get("padding", 0), weight.shape, dilation)
    attributes = {
        "strides": per_axis(config.get("stride", 1), dims),
        "dilations": dilation,
        "group": int(config.get("groups", 1)),
        "kernel_shape": list(weight.shape[2:]),
    }
    nodes, constants, source = [], {}, "X"
    mode = config.get("padding_mode", "zeros")
    if mode != "zeros" and any(pads):
        constants["pads"] = np.array([0, 0, *pads[:dims], 0, 0, *pads[dims:]], dtype=np.int64)
        nodes.append(Node("Pad", ("X", "pads"), ("X_padded",), {"mode": PAD_MODES[mode]}))
        source, pads = "X_padded", [0] * (2 * dims)
    conv_inputs = (source, "W", *(("B",) if bias is not None else ()))
    nodes.append(Node("Conv", conv_inputs, ("Y",), {**attributes, "pads": pads}))
    feeds = [feed, Feed("W", "weight"), *_optional("B", bias, "bias")]
    return GraphPlan(nodes, feeds, [Result("output", "Y", unbatched)], constants)


def conv_transpose(arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int) -> GraphPlan:
    """ConvTranspose. ONNX's output size stride*(in-1) + output_padding + (k-1)*d + 1 -
    pads_begin - pads_end is torch's with pads_begin = pads_end = padding."""
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    feed, unbatched = input_feed(x, dims)
    padding = per_axis(config.get("padding", 0), dims)
    attributes = {
        "strides": per_axis(config.get("stride", 1), dims),
        "dilations": per_axis(config.get("dilation", 1), dims),
        "group": int(config.get("groups", 1)),
        "kernel_shape": list(weight.shape[2:]),
        "pads": padding + padding,
        "output_padding": per_axis(config.get("output_padding", 0), dims),
    }
    inputs = ("X", "W", *(("B",) if bias is not None else ()))
    feeds = [feed, Feed("W", "weight"), *_optional("B", bias, "bias")]
    nodes = [Node("ConvTranspose", inputs, ("Y",), attributes)]
    return GraphPlan(nodes, feeds, [Result("output", "Y", unbatched)])


def conv_transpose_conv(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """ConvTranspose -> Conv, as conv_transpose and conv build them (the second's padding is
    conv_padding, its stride 1), the weights and biases constant initializers as an exported
    model has them."""
    x = arrays["input"]
    knobs = ("stride", "padding", "output_padding", "dilation")
    up = conv_transpose(
        {"input": x, "weight": arrays["transpose_weight"], "bias": arrays.get("transpose_bias")},
        {k: config[k] for k in knobs if k in config},
        2,
    )
    down = conv(
        {"input": x, "weight": arrays["conv_weight"], "bias": arrays.get("conv_bias")},
        {"padding": config.get("conv_padding", 0)},
        2,
    )
    (first,), (second,) = up.nodes, down.nodes
    biased_up, biased_down = len(first.inputs) == 3, len(second.inputs) == 3
    nodes = [
        Node(first.op_type, ("X", "Wt", *(("Bt",) if biased_up else ())), ("H",), first.attributes),
        Node(
            second.op_type,
            ("H", "Wc", *(("Bc",) if biased_down else ())),
            ("Y",),
            second.attributes,
        ),
    ]
    feeds = [up.feeds[0], Feed("Wt", "transpose_weight"), Feed("Wc", "conv_weight")]
    feeds += [Feed("Bt", "transpose_bias")] if biased_up else []
    feeds += [Feed("Bc", "conv_bias")] if biased_down else []
    baked = tuple(f.name for f in feeds if f.name != "X")
    return GraphPlan(nodes, feeds, down.results, initializers=baked)


def fold(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """Col2Im (opset 18): image_shape and block_shape inputs, dilations/pads/strides."""
    columns = arrays["input"]
    unbatched = columns.ndim == 2
    attributes = {
        "dilations": per_axis(config.get("dilation", 1), 2),
        "pads": per_axis(config.get("padding", 0), 2) * 2,
        "strides": per_axis(config.get("stride", 1), 2),
    }
    constants = {
        "image_shape": np.array(per_axis(config["output_size"], 2), dtype=np.int64),
        "block_shape": np.array(per_axis(config["kernel_size"], 2), dtype=np.int64),
    }
    nodes = [Node("Col2Im", ("X", "image_shape", "block_shape"), ("Y",), attributes)]
    feeds = [Feed("X", "input", batch=unbatched)]
    return GraphPlan(nodes, feeds, [Result("output", "Y", unbatched)], constants)


def patch_embedding(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """Conv with stride = kernel = patch (a trailing remainder is dropped by both)."""
    weight = arrays["weight"]
    return conv(arrays, {"stride": list(weight.shape[2:])}, 2)


def depthwise_separable_conv(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """Two Convs: depthwise (group = channels, padding 'same' as torch's), then pointwise."""
    x, depthwise, pointwise = (
        arrays["input"],
        arrays["depthwise_weight"],
        arrays["pointwise_weight"],
    )
    feed, unbatched = input_feed(x, 2)
    dilation = per_axis(config.get("dilation", 1), 2)
    first = {
        "strides": per_axis(config.get("stride", 1), 2),
        "dilations": dilation,
        "group": int(x.shape[-3]),
        "kernel_shape": list(depthwise.shape[2:]),
        "pads": conv_pads(config.get("padding", 0), depthwise.shape, dilation),
    }
    has_db, has_pb = arrays["depthwise_bias"] is not None, arrays["pointwise_bias"] is not None
    nodes = [
        Node("Conv", ("X", "Wd", *(("Bd",) if has_db else ())), ("H",), first),
        Node("Conv", ("H", "Wp", *(("Bp",) if has_pb else ())), ("Y",), {"kernel_shape": [1, 1]}),
    ]
    feeds = [
        feed,
        Feed("Wd", "depthwise_weight"),
        Feed("Wp", "pointwise_weight"),
        *_optional("Bd", arrays["depthwise_bias"], "depthwise_bias"),
        *_optional("Bp", arrays["pointwise_bias"], "pointwise_bias"),
    ]
    del pointwise
    return GraphPlan(nodes, feeds, [Result("output", "Y", unbatched)])


def _check_float32_eps(eps: float, dtype: str) -> None:
    """ONNX's epsilon attribute is a float32: a float64 call whose eps float32 cannot hold
    would be another call."""
    if dtype == "float64" and float(np.float32(eps)) != eps:
        raise Unsupported(
            f"eps={eps} in float64: ONNX's epsilon attribute is a float32 "
            f"({float(np.float32(eps))!r}), a different eps"
        )


def batch_norm(arrays: Mapping[str, Any], config: Mapping[str, Any], dtype: str) -> GraphPlan:
    """BatchNormalization (opset 15). Eval: training_mode 0 on the running statistics.
    Training: training_mode 1 normalizes with the biased batch variance, as torch; but ONNX
    updates running_var with that biased variance (running * momentum + var * (1 -
    momentum)) where torch uses the unbiased one, so an update is expressible only with
    torch's momentum 0 (ONNX momentum 1: the statistics stay). ONNX's epsilon is a 32-bit
    float attribute: a float64 call whose eps float32 cannot hold is not the same call."""
    x = arrays["input"]
    channels = x.shape[1]
    eps, momentum = float(config.get("eps", 1e-5)), float(config.get("momentum", 0.1))
    training = bool(config.get("training", False))
    _check_float32_eps(eps, dtype)
    has_running = arrays["running_mean"] is not None
    if training and has_running and momentum != 0.0:
        raise Unsupported(
            "training with running statistics: ONNX BatchNormalization updates running_var "
            "with the biased batch variance, torch with the unbiased one (n / (n - 1))"
        )
    if not training and not has_running:
        raise Unsupported("eval without running statistics: ONNX needs mean and var inputs")

    def given(name: str, source: str, fill: float) -> Feed:
        if arrays[source] is None:
            return Feed(name, None, fill=fill, length=channels)
        return Feed(name, source)

    feeds = [
        Feed("X", "input"),
        given("scale", "weight", 1.0),
        given("B", "bias", 0.0),
        given("mean", "running_mean", 0.0),
        given("var", "running_var", 1.0),
    ]
    attributes: dict[str, Any] = {"epsilon": eps, "training_mode": int(training)}
    results = [Result("output", "Y")]
    outputs: tuple[str, ...] = ("Y",)
    write_back: tuple[str, ...] = ()
    if training:  # ONNX requires all three outputs in training mode
        attributes["momentum"] = 1.0 - momentum  # = 1: the statistics stay
        outputs = ("Y", "running_mean_out", "running_var_out")
        if has_running:
            results += [
                Result("running_mean", "running_mean_out"),
                Result("running_var", "running_var_out"),
            ]
            write_back = ("running_mean", "running_var")
    nodes = [Node("BatchNormalization", ("X", "scale", "B", "mean", "var"), outputs, attributes)]
    return GraphPlan(nodes, feeds, results, write_back=write_back)


def conv_bn_relu(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """Conv -> BatchNormalization (eval, training_mode 0) -> Relu, every parameter a constant
    initializer, as an exported inference model has them: onnxruntime's default graph
    optimizations may then fold the batch norm into the Conv (ConvBNFusion) and fuse the
    Relu (ConvActivationFusion); the graph says what to compute, the runtime decides how.
    An absent bn_weight is a scale of ones, an absent bn_bias a B of zeros (torch's
    meaning); a float32 epsilon attribute, as batch_norm's (so, as there, a float64 call
    whose eps float32 cannot hold is unsupported)."""
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    _check_float32_eps(float(config.get("eps", 1e-5)), str(x.dtype))
    plan = conv({"input": x, "weight": weight, "bias": bias}, config, 2)
    channels = weight.shape[0]

    def given(name: str, source: str, fill: float) -> Feed:
        if arrays.get(source) is None:  # None, or a trailing None left out of the call
            return Feed(name, None, fill=fill, length=channels)
        return Feed(name, source)

    (conv_node,) = plan.nodes
    nodes = [
        Node("Conv", conv_node.inputs, ("C",), conv_node.attributes),
        Node(
            "BatchNormalization",
            ("C", "scale", "shift", "mean", "var"),
            ("Z",),
            {"epsilon": float(config.get("eps", 1e-5)), "training_mode": 0},
        ),
        Node("Relu", ("Z",), ("Y",), {}),
    ]
    feeds = [
        *plan.feeds,
        given("scale", "bn_weight", 1.0),
        given("shift", "bn_bias", 0.0),
        Feed("mean", "running_mean"),
        Feed("var", "running_var"),
    ]
    baked = tuple(f.name for f in feeds if f.name != "X")
    return GraphPlan(nodes, feeds, plan.results, initializers=baked)


OPS = (
    *(f"conv{d}d" for d in (1, 2, 3)),
    *(f"conv_transpose{d}d" for d in (1, 2, 3)),
    *(f"{kind}_pool{d}d" for kind in ("max", "avg", "lp") for d in (1, 2, 3)),
    *(f"adaptive_{kind}_pool{d}d" for kind in ("avg", "max") for d in (1, 2, 3)),
    "fold",
    "batch_norm",
    "patch_embedding",
    "depthwise_separable_conv",
    "conv_bn_relu",
    "conv_max_pool",
    "conv_transpose_conv",
)


def feed_value(feed: Feed, arrays: Mapping[str, Any], dtype: np.dtype) -> np.ndarray:
    if feed.source is None:
        return np.full(feed.length, feed.fill, dtype=dtype)
    array = np.ascontiguousarray(arrays[feed.source])
    return array[np.newaxis] if feed.batch else array


def plane_offsets(shape: Sequence[int]) -> np.ndarray:
    """(n * C + c) * prod(spatial) per (n, c), broadcastable against (N, C, *spatial)."""
    planes = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape[0], shape[1])
    return planes.reshape(*planes.shape, *([1] * (len(shape) - 2))) * math.prod(shape[2:])


def result_value(result: Result, got: np.ndarray, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    if result.plane_of is not None:
        got = got - plane_offsets(feeds[result.plane_of].shape)
    return got[0] if result.unbatch else got
