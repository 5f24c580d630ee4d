"""Per layer: the reference's shape formulas against the real shapes, its parameter count
against numel, its multiply-adds and FLOPs beside torch's FlopCounterMode, and the
depthwise-separable and 1x1 alternatives of each standard convolution (the notebook's
sections 3, 4, 7 and 13).

Counts follow reference.layers' stated convention: a MAC is one product of a sum of
products (padded zeros included, bias additions not); FLOP = 2 MACs; the backward pass is
grad_input plus grad_weight, each as many FLOPs as the forward. Pooling, batch norm and
activations have no products. FlopCounterMode counts the same products except where its
rules differ (conformance.campaign.arithmetic.COUNTER), which each row names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from conformance.judge.flop_counter import COUNTER, counter_prediction
from conformance.model.trace import Call, Layer
from reference import layers as described
from reference.shapes import pool_output_size

Shape = tuple[int, ...]


@dataclass
class Counts:
    """What one layer's calls add up to."""

    parameters: int  # the scalars first used by this layer
    described_parameters: int | None  # the reference's count of the same, None if unknown
    macs: int | None  # None: the layer multiplies in calls the reference does not describe
    flops_forward: int | None
    flops_backward: int | None
    shape_check: str  # "ok", "MISMATCH: ..." or "-" (no formula for these calls)
    predicted_torch: tuple[int, int]  # FlopCounterMode's forward and backward, by its rules
    separable: tuple[int, int] | None  # (parameters, MACs) of the depthwise-separable version
    pointwise: tuple[int, int] | None  # (parameters, MACs) of a 1x1 conv on the same grid


# calls with products that reference.layers has no description of: no MACs are claimed
UNDESCRIBED_PRODUCTS = frozenset(
    """matmul mm bmm addmm baddbmm einsum multi_head_attention_forward
    scaled_dot_product_attention bilinear conv_tbc""".split()
)


def _tuple(value: Any, dims: int) -> Shape:
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value) if len(value) == dims else tuple(value) * dims
    return (int(value),) * dims


def description(call: Call) -> Any:
    """The reference.layers description of a call, or None where there is none."""
    op, shapes, knobs = call.op, call.shapes, call.knobs
    has_bias = shapes.get("bias") is not None
    if op.startswith("conv_transpose"):
        dims = int(op[-2])
        weight = shapes["weight"]
        groups = int(knobs.get("groups", 1))
        return described.ConvTranspose(
            dims, weight[0], weight[1] * groups, tuple(weight[2:]), knobs["stride"],
            knobs["padding"], knobs["output_padding"], groups, has_bias, knobs["dilation"],
        )  # fmt: skip
    if op.startswith("conv"):
        dims = int(op[-2])
        weight = shapes["weight"]
        groups = int(knobs.get("groups", 1))
        return described.Conv(
            dims, weight[1] * groups, weight[0], tuple(weight[2:]), knobs["stride"],
            knobs["padding"], knobs["dilation"], groups, has_bias,
        )  # fmt: skip
    if op == "linear":
        out_features, in_features = shapes["weight"]
        return described.Linear(in_features, out_features, has_bias)
    if op == "batch_norm":
        return described.BatchNorm(shapes["input"][1], affine=shapes.get("weight") is not None)
    if op.startswith(("max_pool", "avg_pool")):
        dims = int(op[-2])
        return described.Pool(
            op[:3], dims, knobs["kernel_size"], knobs.get("stride") or None,
            knobs.get("padding", 0), knobs.get("dilation", 1), bool(knobs.get("ceil_mode")),
        )  # fmt: skip
    return None


def expected_shape(call: Call) -> Shape | None:
    """The reference's output shape for the call's input shape, None without a formula."""
    input_shape = call.shapes.get("input")
    if input_shape is None:
        return None
    op, dims = call.op, len(input_shape) - 2
    if op.startswith("lp_pool"):
        dims = int(op[-2])
        out = pool_output_size(
            tuple(input_shape[-dims:]), _tuple(call.knobs["kernel_size"], dims),
            call.knobs.get("stride"), 0, 1, bool(call.knobs.get("ceil_mode")),
        )  # fmt: skip
        return (*input_shape[:-dims], *_tuple(out, dims))
    if op.startswith("adaptive"):
        dims = int(op[-2])
        size = call.knobs["output_size"]
        requested = size if isinstance(size, tuple) else (size,) * dims
        spatial = input_shape[-dims:]
        out = tuple(n if o is None else int(o) for n, o in zip(spatial, requested, strict=True))
        return (*input_shape[:-dims], *out)
    layer = description(call)
    return None if layer is None else tuple(layer.output_shape(tuple(input_shape)))


def _alternatives(layer: Any, input_shape: Shape, output_shape: Shape) -> tuple[Any, Any]:
    """(depthwise-separable, 1x1) versions of a standard k x k convolution, or Nones: the
    same stride, padding and dilation on a depthwise k x k then a 1x1 (Chollet 2017), and a
    1x1 convolution producing the same output grid."""
    if not isinstance(layer, described.Conv) or layer.groups != 1 or math.prod(layer.kernel()) == 1:
        return None, None
    c_in, c_out, dims = layer.in_channels, layer.out_channels, layer.dims
    separable = described.Sequential(
        (
            described.Conv(dims, c_in, c_in, layer.kernel_size, layer.stride, layer.padding,
                           layer.dilation, groups=c_in, bias=layer.bias),
            described.Conv(dims, c_in, c_out, 1, bias=layer.bias),
        )
    )  # fmt: skip
    pointwise = described.Conv(dims, c_in, c_out, 1, bias=layer.bias)
    grid = (*output_shape[: -dims - 1], c_in, *output_shape[-dims:])
    return (
        (separable.parameter_count(), separable.macs(input_shape)),
        (pointwise.parameter_count(), pointwise.macs(grid)),
    )


def layer_counts(layer: Layer, parameters: int) -> Counts:
    """Counts of one layer from its calls."""
    macs = forward = backward = 0
    torch_forward = torch_backward = 0
    described_parameters: int | None = 0
    problems, checked = [], 0
    separable = pointwise = None
    for call in layer.calls:
        input_shape = call.shapes.get("input")
        want = expected_shape(call)
        if want is not None:
            checked += 1
            if tuple(want) != tuple(call.output_shape):
                problems.append(f"{call.op}: reference {want}, torch {call.output_shape}")
        layer_description = description(call)
        if layer_description is None or input_shape is None:
            continue
        assert described_parameters is not None
        described_parameters += layer_description.parameter_count()
        macs += layer_description.macs(tuple(input_shape))
        flops = layer_description.flops(tuple(input_shape))
        forward += flops["forward"]
        backward += flops["grad_input"] + flops["grad_weight"]
        predicted = counter_prediction(layer_description, tuple(input_shape))
        torch_forward += predicted[0]
        torch_backward += predicted[1] - predicted[0]
        if separable is None:
            separable, pointwise = _alternatives(
                layer_description, tuple(input_shape), tuple(call.output_shape)
            )
    if not layer.calls and parameters:
        described_parameters = None  # parameters no call the reference describes uses
    shape_check = (
        "-" if not checked else ("ok" if not problems else "MISMATCH: " + "; ".join(problems))
    )
    if any(op in UNDESCRIBED_PRODUCTS for op in layer.ops):
        return Counts(
            parameters, described_parameters, None, None, None, shape_check, (0, 0), None, None
        )
    return Counts(
        parameters, described_parameters, macs, forward, backward, shape_check,
        (torch_forward, torch_backward), separable, pointwise,
    )  # fmt: skip


def counted_alone(
    layer: Layer, dtype: torch.dtype, counter: FlopCounterMode
) -> tuple[int, int] | None:
    """FlopCounterMode's (forward, backward) FLOPs of the layer's module run alone, on a
    random input of the layer's real shape that requires grad (so that, as in the
    convention, grad_input is computed too), read as what the layer adds to ``counter``'s
    total; None where the layer is no module call of one tensor. Run alone because
    FlopCounterMode's per-module attribution of the backward pass follows the module it last
    entered, which mixes the branches of a residual block."""
    module = layer.module
    if module is None or len(layer.input_shapes) != 1:
        return None
    x = torch.randn(layer.input_shapes[0], dtype=dtype, requires_grad=True)
    before = int(counter.get_total_flops())
    output = module(x)
    forward = int(counter.get_total_flops()) - before
    first = output if isinstance(output, torch.Tensor) else output[0]
    first.backward(torch.ones_like(first))
    backward = int(counter.get_total_flops()) - before - forward
    module.zero_grad(set_to_none=True)
    return forward, backward


def torch_flops(
    layers: Sequence[Layer], counts: Sequence[Counts], dtype: torch.dtype
) -> list[tuple[int | None, int | None, str]]:
    """Per layer with products: FlopCounterMode's forward and backward FLOPs and how they
    compare with the layer's own count: 'equal', 'explained: ...' (its stated rules predict
    the difference exactly) or 'UNEXPLAINED: ...'."""
    result: list[tuple[int | None, int | None, str]] = []
    with FlopCounterMode(display=False) as counter:
        for layer, count in zip(layers, counts, strict=True):
            if count.flops_forward is None or not (count.flops_forward or count.predicted_torch[0]):
                result.append((None, None, "-"))
                continue
            got = counted_alone(layer, dtype, counter)
            if got is None:
                result.append((None, None, "not a module of one input: not counted alone"))
                continue
            ours = (count.flops_forward, count.flops_backward)
            if got == ours:
                note = "equal"
            elif got == count.predicted_torch:
                note = "explained: " + _rule(layer)
            else:
                note = f"UNEXPLAINED: ours {ours}, FlopCounterMode {got}"
            result.append((got[0], got[1], note))
    return result


def _rule(layer: Layer) -> str:
    """Which of FlopCounterMode's stated departures applies to the layer's calls."""
    rules = []
    for call in layer.calls:
        if call.op.startswith("conv_transpose"):
            rules.append("it counts the products a transposed convolution's padding crops away")
        elif call.op.startswith("conv") and int(call.knobs.get("groups", 1)) > 1:
            rules.append(
                "it counts a grouped convolution's grad_weight groups times, as if every "
                "input channel met every output channel"
            )
    return "; ".join(dict.fromkeys(rules)) or COUNTER
