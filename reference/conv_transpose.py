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
    PlanCache,
    as_float_array,
    batched,
    check_bias,
    non_negative,
    ntuple,
    plan_key,
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
    planned_array,
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
    knobs = (dims, op, stride, padding, output_padding, groups, dilation)
    key = plan_key((input, weight, bias), knobs)
    known = _PLANS.lend(key, input)
    if known is not None:  # the same shapes, dtypes and knobs passed every check below
        x, unbatched, remembered = known
        return TransposePlan(x, unbatched, weight, bias, *remembered)
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
    geometry = (strides, pads, dilations, groups, full, out)
    _PLANS.put(key, (unbatched, *geometry))
    return TransposePlan(x, unbatched, weight, bias, *geometry)


_PLANS = PlanCache()


def _scatter(plan: TransposePlan, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The batched transposed convolution of ``x`` with ``weight`` (the plan's shapes), no
    bias."""
    full = _windows.correlate_backward_input(
        x, weight, plan.stride, plan.dilation, plan.groups, plan.full_size
    )
    return np.ascontiguousarray(crop(full, plan.padding, plan.out_size))


def _forward(plan: TransposePlan) -> np.ndarray:
    out = _scatter(plan, plan.input, plan.weight)
    if plan.bias is not None:
        out += plan.bias.reshape(-1, *([1] * len(plan.stride)))
    return out[0] if plan.unbatched else out


def _output_shape(plan: TransposePlan) -> tuple[int, ...]:
    """The batched output's shape."""
    return (plan.input.shape[0], plan.weight.shape[1] * plan.groups, *plan.out_size)


def _grad_full(grad_output: np.ndarray, plan: TransposePlan) -> tuple[np.ndarray, np.ndarray]:
    """(grad_output checked and batched, grad_output placed back into the uncropped size)."""
    grad = check_grad_output(grad_output, _output_shape(plan), plan.unbatched, plan.input.dtype)
    grad_full = np.zeros((*grad.shape[:2], *plan.full_size), dtype=grad.dtype)
    crop(grad_full, plan.padding, plan.out_size)[...] = grad
    return grad, grad_full


def _grad_input(grad_full: np.ndarray, plan: TransposePlan, weight: np.ndarray) -> np.ndarray:
    grad_input = _windows.correlate(
        grad_full, weight, plan.stride, plan.dilation, plan.groups, plan.input.shape[2:]
    )
    return grad_input[0] if plan.unbatched else grad_input


def _grad_weight(grad_full: np.ndarray, plan: TransposePlan, x: np.ndarray) -> np.ndarray:
    """(``x`` batched)"""
    return _windows.correlate_backward_weight(
        grad_full, x, plan.weight.shape[2:], plan.stride, plan.dilation, plan.groups
    )


def _backward(grad_output: np.ndarray, plan: TransposePlan) -> Gradients:
    grad, grad_full = _grad_full(grad_output, plan)
    grad_input = _grad_input(grad_full, plan, plan.weight)
    grad_weight = _grad_weight(grad_full, plan, plan.input)
    grad_bias = None
    if plan.bias is not None:
        grad_bias = grad.sum(axis=(0, *range(2, grad.ndim)))
    return grad_input, grad_weight, grad_bias


def conv_transpose_output_shape(
    dims: int,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[int, ...]:
    """The shape conv_transpose{dims}d returns for these arguments, checked as it checks
    them, without computing it."""
    return TransposedConvolution.checked(
        dims, input, weight, bias, stride, padding, output_padding, groups, dilation
    ).output_shape


class TransposedConvolution:
    """conv_transpose{d}d of checked arguments, for the calls a derivative makes on other
    arrays of the same shapes and dtype (conv.Convolution's counterpart): the forward without
    bias, and each adjoint alone, bit for bit what conv_transpose{d}d and its backward give."""

    def __init__(self, plan: TransposePlan) -> None:
        self._plan, self.dtype = plan, plan.input.dtype
        self.input = plan.input[0] if plan.unbatched else plan.input
        self.weight = plan.weight
        shape = _output_shape(plan)
        self.output_shape = shape[1:] if plan.unbatched else shape

    @classmethod
    def checked(
        cls,
        dims: int,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
    ) -> TransposedConvolution:
        """Checked as conv_transpose{dims}d checks its arguments."""
        return cls(
            plan_conv_transpose(
                dims, f"conv_transpose{dims}d", input, weight, bias, stride, padding,
                output_padding, groups, dilation,
            )
        )  # fmt: skip

    def _batched(self, array: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
        array = planned_array(array, name, shape, self.dtype, "transposed convolution's")
        return array[np.newaxis] if self._plan.unbatched and name != "weight" else array

    def forward(self, input: np.ndarray, weight: np.ndarray) -> np.ndarray:
        x = self._batched(input, "input", self.input.shape)
        out = _scatter(self._plan, x, self._batched(weight, "weight", self.weight.shape))
        return out[0] if self._plan.unbatched else out

    def grad_input(self, grad_output: np.ndarray, weight: np.ndarray) -> np.ndarray:
        _, grad_full = _grad_full(grad_output, self._plan)
        return _grad_input(
            grad_full, self._plan, self._batched(weight, "weight", self.weight.shape)
        )

    def grad_weight(self, grad_output: np.ndarray, input: np.ndarray) -> np.ndarray:
        _, grad_full = _grad_full(grad_output, self._plan)
        x = self._batched(input, "input", self.input.shape)
        return _grad_weight(grad_full, self._plan, x)


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
