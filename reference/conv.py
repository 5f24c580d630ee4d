"""N-d cross-correlation (torch's "convolution") and its gradients.

    y[n, o, q] = bias[o] + sum_{c, k} W[o, c, k] * x_pad[n, g(o)*Cg + c, q*stride + k*dilation]

with x_pad the input padded per ``padding`` and ``padding_mode`` (as ``nn.ConvNd`` applies it)
and g(o) the group of output channel o. The gradients are the adjoints of this bilinear map:
grad_input is the transposed correlation of grad_output with W followed by the adjoint of the
padding, grad_weight the correlation of x_pad with grad_output, grad_bias the sum of
grad_output over batch and space.
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
    check_ndim,
    describe,
    non_negative,
    ntuple,
    plan_key,
    positive,
    positive_int,
)
from reference.padding import Pads, check_padding_mode, check_pads_fit, pad, pad_backward
from reference.shapes import same_padding

PaddingArg = str | IntOrTuple
Gradients = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class ConvFunction(Protocol):
    def __call__(
        self,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> np.ndarray: ...


class ConvBackwardFunction(Protocol):
    def __call__(
        self,
        grad_output: np.ndarray,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> Gradients: ...


@dataclass(frozen=True)
class ConvPlan:
    """A validated convolution call: batched input, per-dimension knobs, output size."""

    input: np.ndarray
    unbatched: bool
    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    padding_mode: str
    groups: int
    out_size: tuple[int, ...]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape the convolution returns (without a batch axis for unbatched input)."""
        batch = () if self.unbatched else self.input.shape[:1]
        return (*batch, self.weight.shape[0], *self.out_size)


def check_same_dtype(input: np.ndarray, **others: np.ndarray | None) -> None:
    for name, array in others.items():
        if array is not None and array.dtype != input.dtype:
            raise TypeError(
                f"{name} must have the same dtype as input ({input.dtype}), got {array.dtype}"
            )


def check_weight(weight: object, dims: int, op: str) -> np.ndarray:
    weight = as_float_array(weight, "weight")
    check_ndim(weight, "weight", (dims + 2,), f"{op} takes (out, in/groups, *kernel)")
    if any(k <= 0 for k in weight.shape[2:]):
        raise ValueError(f"weight's kernel size must be positive, got {weight.shape[2:]}")
    return weight


def check_spatial(input: np.ndarray) -> None:
    if any(size <= 0 for size in input.shape[2:]):
        raise ValueError(f"input's spatial size must be positive, got shape {input.shape}")


def plan_conv(
    dims: int,
    op: str,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: PaddingArg,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str,
) -> ConvPlan:
    key = plan_key(
        (input, weight, bias), (dims, op, stride, padding, dilation, groups, padding_mode)
    )
    known = _PLANS.lend(key, input)
    if known is not None:  # the same shapes, dtypes and knobs passed every check below
        x, unbatched, remembered = known
        return ConvPlan(x, unbatched, weight, bias, *remembered)
    input = as_float_array(input, "input")
    weight = check_weight(weight, dims, op)
    x, unbatched = batched(input, dims, op)
    check_spatial(x)
    groups = positive_int(groups, "groups")
    out_channels, in_per_group = weight.shape[:2]
    if out_channels % groups:
        raise ValueError(
            f"weight.shape[0] (out_channels={out_channels}) must be divisible by groups={groups}"
        )
    if x.shape[1] != in_per_group * groups:
        raise ValueError(
            f"input has {x.shape[1]} channels, but weight of shape {weight.shape} with "
            f"groups={groups} expects {in_per_group * groups}"
        )
    bias = check_bias(bias, out_channels)
    check_same_dtype(input, weight=weight, bias=bias)
    # torch repeats a one-element stride, padding or dilation over the spatial dimensions
    strides = positive(ntuple(stride, "stride", dims, broadcast=True), "stride")
    dilations = positive(ntuple(dilation, "dilation", dims, broadcast=True), "dilation")
    padding_mode = check_padding_mode(padding_mode)
    kernel_size = weight.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * dims
        elif padding == "same":
            if any(s != 1 for s in strides):
                raise ValueError(f"padding='same' requires stride 1, got stride={strides}")
            pads = same_padding(tuple(kernel_size), dilations)
        else:
            raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
    else:
        widths = ntuple(padding, "padding", dims, broadcast=True)
        pads = tuple((p, p) for p in non_negative(widths, "padding"))
    spatial = x.shape[2:]
    check_pads_fit(spatial, pads, padding_mode)
    out_size = []
    for axis, (size, (before, after), k, s, d) in enumerate(
        zip(spatial, pads, kernel_size, strides, dilations, strict=True)
    ):
        padded, extent = size + before + after, d * (k - 1) + 1
        if extent > padded:
            raise ValueError(
                f"weight's kernel size {k} with dilation {d} spans {extent}, larger than the "
                f"padded input size {padded} in spatial dimension {axis}"
            )
        out_size.append((padded - extent) // s + 1)
    geometry = (strides, dilations, pads, padding_mode, groups, tuple(out_size))
    _PLANS.put(key, (unbatched, *geometry))
    return ConvPlan(x, unbatched, weight, bias, *geometry)


_PLANS = PlanCache()


def conv_output_shape(
    dims: int,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[int, ...]:
    """The shape conv{dims}d returns for these arguments, checked as it checks them, without
    computing it."""
    plan = plan_conv(
        dims, f"conv{dims}d", input, weight, bias, stride, padding, dilation, groups, padding_mode
    )
    return plan.output_shape


def _expand_bias(bias: np.ndarray, dims: int) -> np.ndarray:
    return bias.reshape(-1, *([1] * dims))


def _zero_pads(plan: ConvPlan) -> Pads | None:
    """The pads the correlations apply themselves (zero padding: large grouped convs pad
    block by block, never the whole input); None where the plan's padding mode is applied
    here (pad, pad_backward)."""
    return plan.pads if plan.padding_mode == "zeros" else None


def _padded(plan: ConvPlan, x: np.ndarray) -> np.ndarray:
    """The batched ``x`` as the correlations take it: padded here unless they pad it."""
    return x if plan.padding_mode == "zeros" else pad(x, plan.pads, plan.padding_mode)


def _correlate(plan: ConvPlan, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The batched ``x`` correlated with ``weight`` per the plan, no bias."""
    return _windows.correlate(
        _padded(plan, x), weight, plan.stride, plan.dilation, plan.groups, plan.out_size,
        _zero_pads(plan),
    )  # fmt: skip


def _forward(plan: ConvPlan) -> np.ndarray:
    dims = len(plan.stride)
    out = _correlate(plan, plan.input, plan.weight)
    if plan.bias is not None:
        out += _expand_bias(plan.bias, dims)
    return out[0] if plan.unbatched else out


def check_grad_output(
    grad_output: object,
    expected_shape: tuple[int, ...],
    unbatched: bool,
    dtype: np.dtype,
    name: str = "grad_output",
) -> np.ndarray:
    """grad_output (an output-shaped argument ``name``) must have the forward output's shape
    (and the input's batching) and the input's dtype."""
    grad = as_float_array(grad_output, name)
    shape = expected_shape[1:] if unbatched else expected_shape
    if grad.shape != shape:
        raise ValueError(f"{name} must have the output's shape {shape}, got {grad.shape}")
    if grad.dtype != dtype:
        raise TypeError(f"{name} must have the input's dtype ({dtype}), got {grad.dtype}")
    return grad[np.newaxis] if unbatched else grad


def _checked_grad(grad_output: np.ndarray, plan: ConvPlan) -> np.ndarray:
    out_shape = (plan.input.shape[0], plan.weight.shape[0], *plan.out_size)
    return check_grad_output(grad_output, out_shape, plan.unbatched, plan.input.dtype)


def _grad_input(grad: np.ndarray, plan: ConvPlan, weight: np.ndarray | None = None) -> np.ndarray:
    """grad_input of the plan's convolution (with ``weight`` in place of the plan's)."""
    weight = plan.weight if weight is None else weight
    padded_size = tuple(
        n + a + b for n, (a, b) in zip(plan.input.shape[2:], plan.pads, strict=True)
    )
    grad_input = _windows.correlate_backward_input(
        grad, weight, plan.stride, plan.dilation, plan.groups, padded_size, _zero_pads(plan)
    )
    if plan.padding_mode != "zeros":  # the correlation's gradient is the padded input's
        grad_input = pad_backward(grad_input, plan.input.shape[2:], plan.pads, plan.padding_mode)
    if plan.unbatched:
        grad_input = grad_input[0]
    return np.ascontiguousarray(grad_input)


def _grad_weight(grad: np.ndarray, plan: ConvPlan, input: np.ndarray | None = None) -> np.ndarray:
    """grad_weight of the plan's convolution (with the batched ``input`` in place of the
    plan's)."""
    x = _padded(plan, plan.input if input is None else input)
    return _windows.correlate_backward_weight(
        x, grad, plan.weight.shape[2:], plan.stride, plan.dilation, plan.groups, _zero_pads(plan)
    )


def _backward(grad_output: np.ndarray, plan: ConvPlan) -> Gradients:
    dims = len(plan.stride)
    grad = _checked_grad(grad_output, plan)
    grad_bias = None
    if plan.bias is not None:
        grad_bias = grad.sum(axis=(0, *range(2, 2 + dims)))
    return _grad_input(grad, plan), _grad_weight(grad, plan), grad_bias


def _described(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return describe(value)


def planned_array(
    array: np.ndarray, name: str, shape: tuple[int, ...], dtype: np.dtype, what: str
) -> np.ndarray:
    """``array`` checked against a planned call (``what``: whose plan, for the message),
    contiguous as as_float_array makes the functions' arrays: the same sums, in the same
    order, whatever the caller's layout."""
    if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
        raise ValueError(
            f"{name} must be an array of shape {shape} and dtype {dtype} (the planned {what}), "
            f"got {_described(array)}"
        )
    return np.ascontiguousarray(array)


class Convolution:
    """conv1d/2d/3d (the weight's rank says which) with its arguments checked once, for many
    calls on arrays of the same shapes and dtype (an error bound's magnitude passes, a running
    error analysis): the forward without bias, and each adjoint alone (torch's
    convolution_backward output_mask), bit for bit what conv{d}d and conv{d}d_backward give.
    Each call checks only its arrays' shapes and dtype against the plan."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        weight_shape: tuple[int, ...],
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        dtype: np.dtype | type = np.float64,
    ) -> None:
        dims = len(weight_shape) - 2
        if dims not in (1, 2, 3):
            raise ValueError(f"weight_shape must have 3, 4 or 5 entries, got {weight_shape}")
        zero = np.zeros((), np.dtype(dtype))
        stand_ins = np.broadcast_to(zero, input_shape), np.broadcast_to(zero, weight_shape)
        self._adopt(
            plan_conv(
                dims, f"conv{dims}d", *stand_ins, None, stride, padding, dilation, groups,
                padding_mode,
            )
        )  # fmt: skip

    def _adopt(self, plan: ConvPlan) -> None:
        self._plan, self.dtype = plan, plan.input.dtype
        # the planned arrays as the caller gave them (stand-ins where only shapes were given)
        self.input = plan.input[0] if plan.unbatched else plan.input
        self.weight = plan.weight
        self.input_shape, self.weight_shape = self.input.shape, plan.weight.shape
        self.output_shape = plan.output_shape

    @classmethod
    def checked(
        cls,
        dims: int,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> Convolution:
        """The convolution of these arrays, checked as conv{dims}d checks its arguments (the
        bias too, which the planned calls leave out); ``input`` and ``weight`` hold them as
        float arrays."""
        planned = cls.__new__(cls)
        planned._adopt(
            plan_conv(
                dims, f"conv{dims}d", input, weight, bias, stride, padding, dilation, groups,
                padding_mode,
            )
        )  # fmt: skip
        return planned

    def _check(
        self, array: np.ndarray, name: str, shape: tuple[int, ...], batch: bool = True
    ) -> np.ndarray:
        """array, checked against the plan, with a batch axis where the plan added one
        (``batch``: an input or grad_output, not a weight)."""
        array = planned_array(array, name, shape, self.dtype, "convolution's")
        return array[np.newaxis] if batch and self._plan.unbatched else array

    def forward(self, input: np.ndarray, weight: np.ndarray) -> np.ndarray:
        plan = self._plan
        x = self._check(input, "input", self.input_shape)
        weight = self._check(weight, "weight", self.weight_shape, batch=False)
        out = _correlate(plan, x, weight)
        return out[0] if plan.unbatched else out

    def grad_input(self, grad_output: np.ndarray, weight: np.ndarray) -> np.ndarray:
        grad = self._check(grad_output, "grad_output", self.output_shape)
        self._check(weight, "weight", self.weight_shape, batch=False)
        return _grad_input(grad, self._plan, weight)

    def grad_weight(self, grad_output: np.ndarray, input: np.ndarray) -> np.ndarray:
        grad = self._check(grad_output, "grad_output", self.output_shape)
        x = self._check(input, "input", self.input_shape)
        return _grad_weight(grad, self._plan, x)


def _make_conv(dims: int) -> tuple[ConvFunction, ConvBackwardFunction]:
    op = f"conv{dims}d"

    def conv(
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> np.ndarray:
        plan = plan_conv(
            dims, op, input, weight, bias, stride, padding, dilation, groups, padding_mode
        )
        return _forward(plan)

    def conv_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> Gradients:
        plan = plan_conv(
            dims, op, input, weight, bias, stride, padding, dilation, groups, padding_mode
        )
        return _backward(grad_output, plan)

    conv.__name__ = conv.__qualname__ = op
    conv.__doc__ = (
        f"{dims}-d cross-correlation with torch.nn.functional.{op}'s signature, plus the "
        "padding_mode of torch.nn.Conv{dims}d (zeros, reflect, replicate, circular)."
    ).replace("{dims}", str(dims))
    conv_backward.__name__ = conv_backward.__qualname__ = f"{op}_backward"
    conv_backward.__doc__ = (
        f"Gradients (grad_input, grad_weight, grad_bias) of {op}; grad_bias is None "
        "without bias. Derived from the adjoints, not from finite differences."
    )
    return conv, conv_backward


conv1d, conv1d_backward = _make_conv(1)
conv2d, conv2d_backward = _make_conv(2)
conv3d, conv3d_backward = _make_conv(3)
