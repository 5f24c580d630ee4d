"""Which torch call moves which receptive field where: the field of a call's output from
its inputs' fields and its knobs (conformance.model.fields does the arithmetic).

Calls are known by their torch.nn.functional or Tensor-method names, as a TorchFunctionMode
sees them. The knobs of the ops the reference mirrors are bound to the reference's own
signature (the same names, order and defaults as torch.nn.functional's).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any, Literal

import numpy as np

import reference
from conformance.model import fields
from conformance.model.fields import Field

# unary calls whose output position p depends on input position p alone
SAME = frozenset(
    """relu relu_ relu6 hardtanh hardtanh_ leaky_relu leaky_relu_ elu elu_ selu selu_ celu
    gelu silu mish hardswish softplus tanh tanh_ dropout dropout_ dropout1d dropout2d
    dropout3d alpha_dropout feature_alpha_dropout batch_norm contiguous clone to float double
    half bfloat16 type neg __neg__ abs clamp clamp_ clip clip_ square sqrt pow __pow__
    prelu rrelu threshold threshold_""".split()
)
# the same, but mapping 0 to a non-zero value: the impulse probe cannot see their field
NONZERO_AT_ZERO = frozenset(
    "sigmoid sigmoid_ hardsigmoid exp exp_ cos softmax log_softmax log_sigmoid".split()
)
SUMS = frozenset("add add_ __add__ __iadd__ __radd__ sub sub_ __sub__ __isub__ __rsub__".split())
PRODUCTS = frozenset(
    """mul mul_ __mul__ __imul__ __rmul__ div div_ __truediv__ __itruediv__ __rtruediv__
    maximum minimum""".split()
)
CONCATENATIONS = frozenset({"cat", "concat", "concatenate"})
REDUCTIONS = frozenset("mean sum amax amin max min std var norm logsumexp nansum nanmean".split())
RESHAPES = frozenset("flatten view reshape squeeze unsqueeze".split())
DENSE = frozenset({"linear", "matmul", "mm", "bmm", "addmm"})
# the statistics of these are taken over every position: each output sees them all
SPATIAL_STATISTICS = frozenset({"instance_norm", "group_norm", "layer_norm"})
# calls that hand back their input under another name: no layer of their own
TRANSPARENT = frozenset({"view_as", "detach", "detach_", "alias"})

WINDOWED = re.compile(r"^(conv|max_pool|avg_pool|lp_pool)([123])d(_with_indices)?$")
TRANSPOSED = re.compile(r"^conv_transpose([123])d$")
ADAPTIVE = re.compile(r"^adaptive_(avg|max)_pool([123])d(_with_indices)?$")

# (whether the tensor comes from the network's input, and its field: None without one)
Tracked = Callable[[Any], tuple[bool, Field | None]]
Result = tuple[Field | None, str]


def catalogue_name(op: str) -> str:
    """The catalogue's (and torch.nn.functional's) name of a call: max_pool2d for
    max_pool2d_with_indices."""
    return op.removesuffix("_with_indices")


@cache
def _signature(op: str) -> inspect.Signature:
    return inspect.signature(getattr(reference, op))


def bind(op: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by the reference's (torch.nn.functional's) parameter names, the
    defaults filled in."""
    bound = _signature(catalogue_name(op)).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        values = tuple(int(v) for v in value)
        return values if len(values) == dims else values * dims
    return (int(value),) * dims


def _spatial(tensor: Any, dims: int) -> tuple[int, ...] | None:
    shape = tuple(tensor.shape)
    return shape[2:] if len(shape) == dims + 2 else None


def output_field(
    op: str, args: Sequence[Any], kwargs: dict[str, Any], output: Any, tracked: Tracked, dims: int
) -> Result:
    """The field of ``output`` (the first tensor a call returns), or None and the reason."""
    looked_up = [(a, *tracked(a)) for a in tensors(args, kwargs)]
    if any(seen and f is None for _, seen, f in looked_up):
        return None, "an input has no closed form"
    inputs = [(a, f) for a, _, f in looked_up]
    known = [(a, f) for a, f in inputs if f is not None]
    if not known:
        return None, "no input from the network's input"
    first, first_field = known[0]
    if op in SAME or op in TRANSPARENT:
        return first_field, ""
    if op in NONZERO_AT_ZERO:
        return replace(first_field, unprobed=f"{op} maps 0 to a non-zero value"), ""
    if op in SUMS or op in PRODUCTS or op in CONCATENATIONS:
        return _combined(op, args, kwargs, inputs, known, dims)
    if op in SPATIAL_STATISTICS:
        return _statistics(first_field, first, output, dims), ""
    if op in REDUCTIONS or op in RESHAPES or op in DENSE:
        return _pooled(op, first_field, first, output, dims)
    spatial_in, spatial_out = _spatial(first, dims), _spatial(output, dims)
    if spatial_in is None or spatial_out is None:
        return None, f"{op} on a tensor without the input's N, C, spatial layout"
    if WINDOWED.match(op) or TRANSPOSED.match(op):
        return _windowed(op, bind(op, args, kwargs), first_field, spatial_in, spatial_out), ""
    if ADAPTIVE.match(op):
        return fields.adaptive_layer(first_field, spatial_in, spatial_out), ""
    if op == "pad":
        return _padded(first_field, args, kwargs, spatial_in, dims)
    if op == "interpolate":
        return _interpolated(first_field, args, kwargs, spatial_in, spatial_out)
    return None, f"no closed form for {op}"


def tensors(args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
    found = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, (list, tuple)):
            found += [v for v in value if hasattr(v, "shape") and hasattr(v, "dtype")]
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            found.append(value)
    return found


def _combined(
    op: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    inputs: list[tuple[Any, Field | None]],
    known: list[tuple[Any, Field]],
    dims: int,
) -> Result:
    if op in CONCATENATIONS:
        axis = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        if axis not in (1, 1 - (dims + 2)):
            return None, f"{op} along axis {axis}, not the channels"
    merged = fields.union([f for _, f in known])
    if op in PRODUCTS and len(known) > 1:
        return replace(merged, unprobed=f"{op} of two activations: zero where either is"), ""
    constant = [a for a, f in inputs if f is None] + [
        a for a in args if isinstance(a, (int, float)) and a != 0
    ]
    if op in SUMS and constant:
        return replace(merged, unprobed=f"{op} adds a constant: non-zero where nothing is"), ""
    return merged, ""


def _statistics(field: Field, first: Any, output: Any, dims: int) -> Field:
    """Normalized over every position: each position sees the union of all of them."""
    pooled = fields.collapse(field, keep=True)
    spatial = _spatial(output, dims) or (1,) * dims
    boxes = tuple(
        tuple(np.broadcast_to(m, (n, m.shape[1])).copy() for m, n in zip(box, spatial, strict=True))
        for box in pooled.boxes
    )
    return replace(pooled, boxes=boxes, collapsed=field.collapsed)


def _pooled(op: str, field: Field, first: Any, output: Any, dims: int) -> Result:
    """Reductions, reshapes and dense layers: the positions they mix are pooled."""
    shape_in, shape_out = tuple(first.shape), tuple(output.shape)
    if op in RESHAPES and shape_in == shape_out:
        return field, ""
    if op in REDUCTIONS and not field.collapsed and len(shape_in) == dims + 2:
        keep = len(shape_out) == len(shape_in)
        axes = [a - 2 for a in range(2, dims + 2) if not keep or shape_out[a] == 1 < shape_in[a]]
        if keep and not axes:
            return field, ""
        if not keep and len(shape_out) > 2:
            return None, f"{op} leaves neither the N, C, spatial layout nor a pooled one"
        return fields.collapse(field, axes, keep=keep), ""
    if op in DENSE and not field.collapsed and len(shape_in) == dims + 2:
        return None, f"{op} over the last spatial axis"
    return fields.collapse(field), ""


def _windowed(
    op: str,
    knobs: dict[str, Any],
    field: Field,
    spatial_in: tuple[int, ...],
    spatial_out: tuple[int, ...],
) -> Field:
    dims = len(spatial_in)
    if op.startswith("conv"):
        kernel = tuple(int(k) for k in knobs["weight"].shape[2:])
    else:
        kernel = _tuple(knobs["kernel_size"], dims)
    stride_knob = knobs.get("stride")
    stride = kernel if stride_knob is None or stride_knob == [] else _tuple(stride_knob, dims)
    dilation = _tuple(knobs.get("dilation", 1), dims)
    if TRANSPOSED.match(op):
        padding = _tuple(knobs["padding"], dims)
        return fields.transposed_layer(
            field, spatial_in, spatial_out, kernel, stride, padding, dilation
        )
    if op.startswith("conv"):
        before = fields.conv_pads(kernel, knobs["padding"], dilation)
    else:
        before = _tuple(knobs.get("padding", 0), dims)
    return fields.window_layer(field, spatial_in, spatial_out, kernel, stride, before, dilation)


PAD_MODES: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def _padded(
    field: Field, args: Sequence[Any], kwargs: dict[str, Any], spatial: tuple[int, ...], dims: int
) -> Result:
    """torch.nn.functional.pad: (before, after) pairs from the last axis backwards."""
    widths = list(kwargs.get("pad", args[1] if len(args) > 1 else ()))
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    pairs = [(0, 0)] * dims
    for index in range(min(len(widths) // 2, dims)):
        pairs[dims - 1 - index] = (int(widths[2 * index]), int(widths[2 * index + 1]))
    sources = []
    for size, (before, after) in zip(spatial, pairs, strict=True):
        positions = np.arange(size + before + after) - before
        if mode == "constant":
            sources.append(np.where((positions >= 0) & (positions < size), positions, -1))
        elif mode in PAD_MODES and min(before, after) >= 0:
            sources.append(np.pad(np.arange(size), (before, after), mode=PAD_MODES[mode]))
        else:
            return None, f"no closed form for pad mode {mode!r} with widths {widths}"
    steps = [fields.shift_step(before) for before, _ in pairs]
    return fields.copy_layer(field, sources, steps), ""


def _interpolated(
    field: Field,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    spatial_in: tuple[int, ...],
    spatial_out: tuple[int, ...],
) -> Result:
    """Nearest (and nearest-exact) upsampling copies one input per output: torch's source
    index floor(o * scale), or floor((o + 1/2) * scale), scale = in / out, clamped."""
    mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
    if mode not in ("nearest", "nearest-exact"):
        return None, f"no closed form for interpolate mode {mode!r}"
    half = 0.5 if mode == "nearest-exact" else 0.0
    sources = [
        np.minimum(np.floor((np.arange(o) + half) * (n / o)).astype(np.int64), n - 1)
        for n, o in zip(spatial_in, spatial_out, strict=True)
    ]
    factors = [o // n if o % n == 0 else 0 for n, o in zip(spatial_in, spatial_out, strict=True)]
    if mode == "nearest" and all(factors):
        return fields.copy_layer(field, sources, [fields.nearest_step(f) for f in factors]), ""
    return fields.copy_layer(field, sources, None, "nearest upsampling by a non-integer factor"), ""
