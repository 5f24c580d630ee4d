"""N-d transposed convolution and its gradients.

conv_transpose(x, W) is the adjoint of conv(., W) in its input: with full = (I-1)*stride +
dilation*(K-1) + 1 + output_padding, it scatters each input element through the kernel onto
a zero array of size ``full`` and crops ``padding`` from both ends. Its gradients follow from
that: grad_input = conv(grad_full, W) (grad_full = grad_output placed back into ``full``),
grad_weight = the conv weight-gradient of grad_full against x, grad_bias = sum of grad_output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from reference import _windows
from reference._arguments import (
    IntOrTuple,
    as_float_array,
    batched,
    check_bias,
    non_negative,
    ntuple,
    positive,
    positive_int,
)
from reference._windows import crop
from reference.conv import (
    Gradients,
    check_grad_output,
    check_same_dtype,
    check_spatial,
    check_weight,
)
from reference.shapes import conv_transpose_output_size


class ConvTransposeFunction(Protocol):
    def __call__(
        self,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
    ) -> np.ndarray: ...


class ConvTransposeBackwardFunction(Protocol):
    def __call__(
        self,
        grad_output: np.ndarray,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
    ) -> Gradients: ...


@dataclass(frozen=True)
class TransposePlan:
    input: np.ndarray
    unbatched: bool
    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    full_size: tuple[int, ...]
    out_size: tuple[int, ...]


def plan_conv_transpose(
    dims: int,
    op: str,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> TransposePlan:
    input = as_float_array(input, "input")
    weight = check_weight(weight, dims, op)
    x, unbatched = batched(input, dims, op)
    check_spatial(x)
    groups = positive_int(groups, "groups")
    in_channels, out_per_group = weight.shape[:2]
    if in_channels % groups:
        raise ValueError(
            f"weight.shape[0] (in_channels={in_channels}) must be divisible by groups={groups}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels, but weight of shape {weight.shape} expects "
            f"{in_channels}"
        )
    bias = check_bias(bias, out_per_group * groups)
    check_same_dtype(input, weight=weight, bias=bias)
    # torch repeats a one-element knob over the spatial dimensions, as for convolution
    strides = positive(ntuple(stride, "stride", dims, True), "stride")
    pads = non_negative(ntuple(padding, "padding", dims, True), "padding")
    extra = non_negative(ntuple(output_padding, "output_padding", dims, True), "output_padding")
    dilations = positive(ntuple(dilation, "dilation", dims, True), "dilation")
    kernel_size = tuple(weight.shape[2:])
    sizes = tuple(x.shape[2:])
    out = conv_transpose_output_size(sizes, kernel_size, strides, pads, extra, dilations)
    assert isinstance(out, tuple)
    full = tuple(
        (n - 1) * s + d * (k - 1) + 1 + op_
        for n, s, d, k, op_ in zip(sizes, strides, dilations, kernel_size, extra, strict=True)
    )
    return TransposePlan(x, unbatched, weight, bias, strides, pads, dilations, groups, full, out)


def _forward(plan: TransposePlan) -> np.ndarray:
    full = _windows.correlate_backward_input(
        plan.input, plan.weight, plan.stride, plan.dilation, plan.groups, plan.full_size
    )
    out = np.ascontiguousarray(crop(full, plan.padding, plan.out_size))
    if plan.bias is not None:
        out += plan.bias.reshape(-1, *([1] * len(plan.stride)))
    return out[0] if plan.unbatched else out


def _backward(grad_output: np.ndarray, plan: TransposePlan) -> Gradients:
    batch = plan.input.shape[0]
    out_channels = plan.weight.shape[1] * plan.groups
    grad = check_grad_output(
        grad_output, (batch, out_channels, *plan.out_size), plan.unbatched, plan.input.dtype
    )
    grad_full = np.zeros((batch, out_channels, *plan.full_size), dtype=grad.dtype)
    crop(grad_full, plan.padding, plan.out_size)[...] = grad
    grad_input = _windows.correlate(
        grad_full, plan.weight, plan.stride, plan.dilation, plan.groups, plan.input.shape[2:]
    )
    grad_weight = _windows.correlate_backward_weight(
        grad_full, plan.input, plan.weight.shape[2:], plan.stride, plan.dilation, plan.groups
    )
    grad_bias = None
    if plan.bias is not None:
        grad_bias = grad.sum(axis=(0, *range(2, grad.ndim)))
    if plan.unbatched:
        grad_input = grad_input[0]
    return grad_input, grad_weight, grad_bias


def _make_conv_transpose(dims: int) -> tuple[ConvTransposeFunction, ConvTransposeBackwardFunction]:
    op = f"conv_transpose{dims}d"

    def conv_transpose(
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
    ) -> np.ndarray:
        plan = plan_conv_transpose(
            dims, op, input, weight, bias, stride, padding, output_padding, groups, dilation
        )
        return _forward(plan)

    def conv_transpose_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
    ) -> Gradients:
        plan = plan_conv_transpose(
            dims, op, input, weight, bias, stride, padding, output_padding, groups, dilation
        )
        return _backward(grad_output, plan)

    conv_transpose.__name__ = conv_transpose.__qualname__ = op
    conv_transpose.__doc__ = (
        f"{dims}-d transposed convolution with torch.nn.functional.{op}'s signature; weight "
        "is (in_channels, out_channels/groups, *kernel)."
    )
    conv_transpose_backward.__name__ = conv_transpose_backward.__qualname__ = f"{op}_backward"
    conv_transpose_backward.__doc__ = (
        f"Gradients (grad_input, grad_weight, grad_bias) of {op}; grad_bias is None "
        "without bias. Derived from the adjoints, not from finite differences."
    )
    return conv_transpose, conv_transpose_backward


conv_transpose1d, conv_transpose1d_backward = _make_conv_transpose(1)
conv_transpose2d, conv_transpose2d_backward = _make_conv_transpose(2)
conv_transpose3d, conv_transpose3d_backward = _make_conv_transpose(3)
