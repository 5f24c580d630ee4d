"""The pooling graphs of the ONNX adapters: MaxPool, AveragePool, LpPool and the adaptive
pools as fixed windows, with torch's semantics checked against ONNX's (see onnx_graphs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.chains import chain_conv, chain_pooling, conv_spatial
from conformance.implementations import Unsupported
from conformance.implementations.onnx_graphs import (
    GraphPlan,
    Node,
    Result,
    conv,
    input_feed,
    per_axis,
)


def _pool_attributes(config: Mapping[str, Any], dims: int) -> dict[str, Any]:
    kernel = per_axis(config["kernel_size"], dims)
    stride = config.get("stride")
    padding = per_axis(config.get("padding", 0), dims)
    return {
        "kernel_shape": kernel,
        "strides": kernel if stride is None or stride == () else per_axis(stride, dims),
        "pads": padding + padding,
        "ceil_mode": int(bool(config.get("ceil_mode", False))),
    }


def _pool_results(unbatched: bool, indices: bool) -> list[Result]:
    results = [Result("output", "Y", unbatched)]
    if indices:
        results.append(Result("indices", "Indices", unbatched, plane_of="X"))
    return results


def _empty_window(spatial: Sequence[int], attributes: Mapping[str, Any]) -> bool:
    """Whether some window (torch's output size: ceil_mode drops a last window starting in
    the right padding) holds no input element (dilation stepping over a short input)."""
    for size, k, s, p, d in zip(
        spatial,
        attributes["kernel_shape"],
        attributes["strides"],
        attributes["pads"],
        attributes["dilations"],
        strict=False,
    ):
        span = size + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if attributes["ceil_mode"] else span // s) + 1
        if attributes["ceil_mode"] and (out - 1) * s >= size + p:
            out -= 1
        for index in range(out):
            if not any(0 <= index * s - p + t * d < size for t in range(k)):
                return True
    return False


def max_pool(arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int) -> GraphPlan:
    """MaxPool (storage_order 0: row-major Indices, which the plane offset converts). A
    window with no input element has no maximum in ONNX's definition ("the max on all
    values ... exclude pad"); torch gives -inf, index -1."""
    x = arrays["input"]
    feed, unbatched = input_feed(x, dims)
    attributes = _pool_attributes(config, dims)
    attributes["dilations"] = per_axis(config.get("dilation", 1), dims)
    if _empty_window(x.shape[-dims:], attributes):
        raise Unsupported(
            "a window with no input element (all padding): ONNX MaxPool defines no value "
            "for it (torch: -inf, index -1; onnxruntime: the lowest finite value)"
        )
    attributes["storage_order"] = 0
    indices = bool(config.get("return_indices", False))
    outputs = ("Y", "Indices") if indices else ("Y",)
    nodes = [Node("MaxPool", ("X",), outputs, attributes)]
    return GraphPlan(nodes, [feed], _pool_results(unbatched, indices))


def conv_max_pool(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> GraphPlan:
    """Conv -> MaxPool, the weight and bias constant initializers as an exported model has
    them (a runtime may then fuse the pair); MaxPool's window as max_pool's above."""
    x, weight = arrays["input"], arrays["weight"]
    pooling = chain_pooling(config)
    attributes = _pool_attributes(pooling, 2)
    attributes["dilations"] = per_axis(pooling["dilation"], 2)
    if _empty_window(conv_spatial(x.shape, weight.shape, config), attributes):
        raise Unsupported(
            "a pooling window with no element of the convolution's output (all padding): "
            "ONNX MaxPool defines no value for it (torch: -inf)"
        )
    attributes["storage_order"] = 0
    plan = conv({"input": x, "weight": weight, "bias": arrays.get("bias")}, chain_conv(config), 2)
    *before, last = plan.nodes
    nodes = [
        *before,
        Node(last.op_type, last.inputs, ("C",), last.attributes),
        Node("MaxPool", ("C",), ("Y",), attributes),
    ]
    baked = tuple(f.name for f in plan.feeds if f.name != "X")
    return GraphPlan(nodes, plan.feeds, plan.results, plan.constants, initializers=baked)


def avg_pool(arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int) -> GraphPlan:
    """AveragePool; torch's divisor_override has no ONNX attribute."""
    if config.get("divisor_override") is not None:
        raise Unsupported("divisor_override: ONNX AveragePool has no fixed divisor")
    feed, unbatched = input_feed(arrays["input"], dims)
    attributes = _pool_attributes(config, dims)
    attributes["count_include_pad"] = int(bool(config.get("count_include_pad", True)))
    nodes = [Node("AveragePool", ("X",), ("Y",), attributes)]
    return GraphPlan(nodes, [feed], _pool_results(unbatched, False))


def lp_pool(arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int) -> GraphPlan:
    """LpPool is ONNX's p-norm (sum |x|^p)^(1/p) over each window's input elements, with an
    integer p. torch documents lp_pool as (sum x^p)^(1/p) and keeps the sign of the sum for
    odd p (sign(S) relu(|S|)^(1/p), torch/nn/functional.py): the same for even p, and for
    odd p where no input value is negative. A ceil_mode partial window is the p-norm of its
    elements in both definitions (torch's own kernel scales it: a torch finding)."""
    x = arrays["input"]
    p = float(config["norm_type"])
    if not p.is_integer():
        raise Unsupported(f"norm_type={p}: ONNX LpPool's p is an integer attribute")
    if int(p) % 2 and bool(np.any(x < 0)):
        raise Unsupported(
            f"norm_type={p} (odd) with negative inputs: ONNX LpPool sums |x|^p, torch's "
            "lp_pool sums x^p keeping its sign"
        )
    feed, unbatched = input_feed(x, dims)
    attributes = _pool_attributes(config, dims)
    attributes["p"] = int(p)
    nodes = [Node("LpPool", ("X",), ("Y",), attributes)]
    return GraphPlan(nodes, [feed], _pool_results(unbatched, False))


def _adaptive_kernel(x: np.ndarray, output_size: Any, dims: int) -> list[int]:
    """kernel = stride = in / out per dim: torch's adaptive windows [floor(i*in/out),
    ceil((i+1)*in/out)) are exactly those where out divides in; else ONNX has no equivalent."""
    wanted = [output_size] * dims if isinstance(output_size, int) else list(output_size)
    spatial = x.shape[-dims:]
    kernel = []
    for size, out in zip(spatial, wanted, strict=True):
        out = size if out is None else int(out)
        if out == 0 or size % out:
            raise Unsupported(
                f"output size {out} does not divide input size {size}: torch's adaptive "
                "windows are then uneven, and ONNX has no adaptive pooling"
            )
        kernel.append(size // out)
    return kernel


def adaptive_pool(
    arrays: Mapping[str, Any], config: Mapping[str, Any], dims: int, kind: str
) -> GraphPlan:
    """GlobalAveragePool where every output size is 1 (avg), else AveragePool / MaxPool
    with kernel = stride = in / out (exact where out divides in)."""
    x = arrays["input"]
    kernel = _adaptive_kernel(x, config["output_size"], dims)
    feed, unbatched = input_feed(x, dims)
    indices = kind == "max" and bool(config.get("return_indices", False))
    outputs = ("Y", "Indices") if indices else ("Y",)
    if kind == "avg" and kernel == list(x.shape[-dims:]):
        node = Node("GlobalAveragePool", ("X",), outputs, {})
    else:
        attributes = {"kernel_shape": kernel, "strides": kernel}
        node = Node("MaxPool" if kind == "max" else "AveragePool", ("X",), outputs, attributes)
    return GraphPlan([node], [feed], _pool_results(unbatched, indices))
