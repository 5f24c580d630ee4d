"""One valid call per public function of reference, and the kind of each of its arguments.

TABLE maps a public name (``conv2d``, ``Conv`` for the constructor, ``Conv.macs`` for a method,
``layers.depthwise_separable`` for a builder of reference.layers) to a Row: fresh keyword
arguments, a Kind per argument (tests/reference/wrong_values.py), and what to compare. Small
arrays, drawn once from a fixed seed, with knob values that matter (stride 2, padding 1,
groups 2), so that a misread argument changes the answer. test_wrong_types fails for a public
function without a row, and for a row missing one of the function's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import reference
from reference import _grouped, _windows
from reference import layers as layer_module
from reference.layers import BatchNorm, Conv, ConvTranspose, Linear, Pool, Residual, Sequential
from reference.receptive_field import Field
from tests.reference.wrong_values import (
    Array,
    Choice,
    Count,
    Flag,
    Function,
    Index,
    Indices,
    Items,
    Kind,
    Knob,
    Layer,
    OptionalNonzero,
    Options,
    Real,
    Shape,
)

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """A valid call: ``make`` returns fresh keyword arguments; ``call`` (default: the public
    function itself) returns what is compared; ``also``, per argument, other names an error
    about it may name instead."""

    make: Callable[[], Kwargs]
    kinds: dict[str, Kind]
    call: Callable[..., Any] | None = None
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)


TABLE: dict[str, Row] = {}


def normal(*shape: int, seed: int = 20240611) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


def add(name: str, row: Row, forward: Callable[..., Any] | None = None) -> None:
    """The row, and with ``forward`` its ``<name>_backward`` row: the same arguments and a
    grad_output of the forward output's shape, which must match it exactly."""
    TABLE[name] = row
    if forward is None:
        return

    def make() -> Kwargs:
        kwargs = row.make()
        out = forward(**kwargs)
        out = out[0] if isinstance(out, tuple) else out
        return {"grad_output": normal(*out.shape, seed=7), **kwargs}

    kinds = {"grad_output": Array(exact=True), **row.kinds}
    TABLE[f"{name}_backward"] = Row(make, kinds, also=row.also)


# ---------------------------------------------------------------------------------------------
# convolution and pooling (the knobs torch repeats from one element are Knob(..., "same"))


def _conv_rows(dims: int) -> None:
    def make() -> Kwargs:
        return dict(
            input=normal(2, 2, *[5] * dims), weight=normal(4, 1, *[3] * dims), bias=normal(4),
            stride=2, padding=1, dilation=1, groups=2, padding_mode="reflect",
        )  # fmt: skip

    kinds: dict[str, Kind] = dict(
        input=Array(ndims=(dims + 1, dims + 2)), weight=Array(ndims=(dims + 2,)),
        bias=Array(exact=True, required=False), stride=Knob(dims, 1, "same"),
        padding=Knob(dims, 0, "same", strings=("same", "valid")), dilation=Knob(dims, 1, "same"),
        groups=Count(), padding_mode=Choice(("zeros", "reflect", "replicate", "circular")),
    )  # fmt: skip
    add(f"conv{dims}d", Row(make, kinds), getattr(reference, f"conv{dims}d"))

    def make_transposed() -> Kwargs:
        return dict(
            input=normal(2, 2, *[3] * dims), weight=normal(2, 2, *[3] * dims), bias=normal(4),
            stride=2, padding=1, output_padding=1, groups=2, dilation=1,
        )  # fmt: skip

    transposed: dict[str, Kind] = dict(
        input=Array(ndims=(dims + 1, dims + 2)), weight=Array(ndims=(dims + 2,)),
        bias=Array(exact=True, required=False), stride=Knob(dims, 1, "same"),
        padding=Knob(dims, 0, "same"), output_padding=Knob(dims, 0, "same"), groups=Count(),
        dilation=Knob(dims, 1, "same"),
    )  # fmt: skip
    name = f"conv_transpose{dims}d"
    add(name, Row(make_transposed, transposed), getattr(reference, name))


def _pool_rows(dims: int) -> None:
    spatial = Array(ndims=(dims + 1, dims + 2), shares_dtype=False)
    repeated: dict[str, Kind] = dict(
        kernel_size=Knob(dims, 1, "same"), stride=Knob(dims, 1, "same", optional=True),
        padding=Knob(dims, 0, "same"),
    )  # fmt: skip

    def make_max() -> Kwargs:
        return dict(
            input=normal(2, 2, *[6] * dims), kernel_size=3, stride=2, padding=1, dilation=1,
            ceil_mode=True, return_indices=True,
        )  # fmt: skip

    max_kinds: dict[str, Kind] = dict(
        input=spatial, dilation=Knob(dims, 1, "same"), ceil_mode=Flag(), return_indices=Flag()
    )
    name = f"max_pool{dims}d"
    add(name, Row(make_max, {**max_kinds, **repeated}), getattr(reference, name))

    def make_avg() -> Kwargs:
        kwargs = dict(
            input=normal(2, 2, *[6] * dims), kernel_size=3, stride=2, padding=1, ceil_mode=True,
            count_include_pad=False,
        )  # fmt: skip
        return kwargs if dims == 1 else {**kwargs, "divisor_override": 5}

    avg_kinds: dict[str, Kind] = dict(input=spatial, ceil_mode=Flag(), count_include_pad=Flag())
    if dims > 1:  # torch's avg_pool1d has no divisor_override
        avg_kinds["divisor_override"] = OptionalNonzero()
    name = f"avg_pool{dims}d"
    add(name, Row(make_avg, {**avg_kinds, **repeated}), getattr(reference, name))

    def make_lp() -> Kwargs:
        return dict(input=normal(2, 2, *[6] * dims), norm_type=2.0, kernel_size=2, stride=1)

    lp_kinds: dict[str, Kind] = dict(
        input=spatial, norm_type=Real("gt0"), kernel_size=Knob(dims),
        stride=Knob(dims, optional=True), ceil_mode=Flag(),
    )  # fmt: skip
    name = f"lp_pool{dims}d"
    add(name, Row(make_lp, lp_kinds), getattr(reference, name))

    def make_adaptive() -> Kwargs:
        return {"input": normal(2, 2, *[5] * dims), "output_size": 3}

    output_size = Knob(dims, 0, optional=True, none_items=True)
    adaptive: dict[str, Kind] = {"input": spatial, "output_size": output_size}
    name = f"adaptive_avg_pool{dims}d"
    add(name, Row(make_adaptive, adaptive), getattr(reference, name))

    def make_adaptive_max() -> Kwargs:
        return {**make_adaptive(), "return_indices": True}

    name = f"adaptive_max_pool{dims}d"
    with_indices = {**adaptive, "return_indices": Flag()}
    add(name, Row(make_adaptive_max, with_indices), getattr(reference, name))


for _dims in (1, 2, 3):
    _conv_rows(_dims)
    _pool_rows(_dims)


def _make_unfold() -> Kwargs:
    return dict(input=normal(2, 2, 4, 5), kernel_size=2, dilation=1, padding=1, stride=2)


def _make_fold() -> Kwargs:
    columns = reference.unfold(**_make_unfold())
    return {**_make_unfold(), "input": normal(*columns.shape), "output_size": (4, 5)}


_BLOCKS: dict[str, Kind] = dict(
    kernel_size=Knob(2), dilation=Knob(2), padding=Knob(2, 0), stride=Knob(2)
)
_UNFOLD_INPUT = Array(ndims=(3, 4), shares_dtype=False)
add("unfold", Row(_make_unfold, {"input": _UNFOLD_INPUT, **_BLOCKS}), reference.unfold)
_FOLD_KINDS = {"input": Array(ndims=(2, 3), shares_dtype=False), "output_size": Knob(2)}
add("fold", Row(_make_fold, {**_FOLD_KINDS, **_BLOCKS}), reference.fold)

# ---------------------------------------------------------------------------------------------
# normalization, statistics, blocks


def _make_batch_norm() -> Kwargs:
    return dict(
        input=normal(4, 2, 3), running_mean=normal(2), running_var=np.abs(normal(2)) + 0.5,
        weight=normal(2, seed=1), bias=normal(2, seed=2), training=True, momentum=0.25, eps=1e-3,
    )  # fmt: skip


def _batch_norm_and_statistics(**kwargs: Any) -> tuple[Any, ...]:
    """The output and the running statistics it updated in place."""
    return reference.batch_norm(**kwargs), kwargs["running_mean"], kwargs["running_var"]


def _norm_kinds(running_readonly: str) -> dict[str, Kind]:
    running = Array(exact=True, required=False, readonly=running_readonly)
    return dict(
        input=Array(min_ndim=2), running_mean=running, running_var=running,
        weight=Array(exact=True, required=False), bias=Array(exact=True, required=False),
        training=Flag(), momentum=Real(nan_ok=True, inf_ok=True), eps=Real("ge0", inf_ok=True),
    )  # fmt: skip


# an input of two more axes has other channels: the statistics' shapes are then wrong
_STATISTICS: dict[str, tuple[str, ...]] = {
    "input": ("running_mean", "running_var", "weight", "bias")
}
TABLE["batch_norm"] = Row(
    _make_batch_norm, _norm_kinds("wrong"), _batch_norm_and_statistics, _STATISTICS
)
TABLE["batch_norm_backward"] = Row(  # which reads the running statistics, never writes them
    lambda: {"grad_output": normal(4, 2, 3, seed=7), **_make_batch_norm()},
    {"grad_output": Array(exact=True), **_norm_kinds("same")},
    also=_STATISTICS,
)
TABLE["channel_statistics"] = Row(
    lambda: {"input": normal(4, 2, 3), "correction": 1},
    {"input": Array(min_ndim=2, shares_dtype=False), "correction": Count(None)},
)
TABLE["dead_channel_fraction"] = Row(
    lambda: {"activations": np.maximum(normal(4, 3, 2) - 1.0, 0), "threshold": 0.0},
    {"activations": Array(min_ndim=2, shares_dtype=False), "threshold": Real(inf_ok=True)},
)

_OPTIONAL = Array(exact=True, required=False)
add(
    "patch_embedding",
    Row(
        lambda: {"input": normal(2, 2, 5, 6), "weight": normal(3, 2, 2, 2), "bias": normal(3)},
        {"input": Array(ndims=(3, 4)), "weight": Array(ndims=(4,)), "bias": _OPTIONAL},
    ),
    reference.patch_embedding,
)


def _make_separable() -> Kwargs:
    return dict(
        input=normal(2, 2, 5, 5), depthwise_weight=normal(4, 1, 3, 3),
        pointwise_weight=normal(3, 4, 1, 1), depthwise_bias=normal(4), pointwise_bias=normal(3),
        stride=2, padding=1, dilation=1,
    )  # fmt: skip


_SEPARABLE: dict[str, Kind] = dict(
    input=Array(ndims=(3, 4)), depthwise_weight=Array(ndims=(4,)),
    pointwise_weight=Array(ndims=(4,)), depthwise_bias=_OPTIONAL, pointwise_bias=_OPTIONAL,
    stride=Knob(2, 1, "same"), padding=Knob(2, 0, "same", strings=("same", "valid")),
    dilation=Knob(2, 1, "same"),
)  # fmt: skip
add(
    "depthwise_separable_conv", Row(_make_separable, _SEPARABLE), reference.depthwise_separable_conv
)


def _make_residual() -> Kwargs:
    return dict(
        input=normal(3, 2, 4, 4), conv1_weight=normal(3, 2, 3, 3), bn1_weight=normal(3, seed=1),
        bn1_bias=normal(3, seed=2), conv2_weight=normal(3, 3, 3, 3), bn2_weight=normal(3, seed=3),
        bn2_bias=normal(3, seed=4), shortcut_weight=normal(3, 2, 1, 1),
        shortcut_bn_weight=normal(3, seed=5), shortcut_bn_bias=normal(3, seed=6), stride=2,
        eps=1e-3,
    )  # fmt: skip


_EXACT = Array(exact=True)
_RESIDUAL: dict[str, Kind] = dict(
    input=Array(ndims=(4,)), conv1_weight=_EXACT, bn1_weight=_EXACT, bn1_bias=_EXACT,
    conv2_weight=_EXACT, bn2_weight=_EXACT, bn2_bias=_EXACT, shortcut_weight=_OPTIONAL,
    shortcut_bn_weight=_OPTIONAL, shortcut_bn_bias=_OPTIONAL, stride=Knob(2, 1, "same"),
    eps=Real("ge0", inf_ok=True),
)  # fmt: skip
add("residual_block", Row(_make_residual, _RESIDUAL), reference.residual_block)


def _make_conv_bn_relu() -> Kwargs:
    return dict(
        input=normal(2, 4, 5, 5), weight=normal(6, 2, 3, 3), bias=normal(6),
        running_mean=normal(6, seed=1), running_var=np.abs(normal(6, seed=2)) + 0.5,
        bn_weight=normal(6, seed=3), bn_bias=normal(6, seed=4), stride=2, padding=1, dilation=1,
        groups=2, eps=1e-3,
    )  # fmt: skip


_CONV_BN_RELU: dict[str, Kind] = dict(
    input=Array(ndims=(3, 4)), weight=Array(ndims=(4,)), bias=_OPTIONAL, running_mean=_EXACT,
    running_var=_EXACT, bn_weight=_OPTIONAL, bn_bias=_OPTIONAL, stride=Knob(2, 1, "same"),
    padding=Knob(2, 0, "same", strings=("same", "valid")), dilation=Knob(2, 1, "same"),
    groups=Count(), eps=Real("ge0", inf_ok=True),
)  # fmt: skip
add("conv_bn_relu", Row(_make_conv_bn_relu, _CONV_BN_RELU), reference.conv_bn_relu)


def _make_conv_max_pool() -> Kwargs:
    return dict(
        input=normal(2, 4, 7, 6), weight=normal(6, 2, 3, 3), bias=normal(6), stride=1,
        padding=1, dilation=1, groups=2, pool_kernel_size=3, pool_stride=2, pool_padding=1,
        pool_dilation=1, ceil_mode=True,
    )  # fmt: skip


_CONV_MAX_POOL: dict[str, Kind] = dict(
    input=Array(ndims=(3, 4)), weight=Array(ndims=(4,)), bias=_OPTIONAL,
    stride=Knob(2, 1, "same"), padding=Knob(2, 0, "same", strings=("same", "valid")),
    dilation=Knob(2, 1, "same"), groups=Count(), pool_kernel_size=Knob(2, 1, "same"),
    pool_stride=Knob(2, 1, "same", optional=True), pool_padding=Knob(2, 0, "same"),
    pool_dilation=Knob(2, 1, "same"), ceil_mode=Flag(),
)  # fmt: skip
add("conv_max_pool", Row(_make_conv_max_pool, _CONV_MAX_POOL), reference.conv_max_pool)


def _make_conv_transpose_conv() -> Kwargs:
    return dict(
        input=normal(2, 3, 4, 3), transpose_weight=normal(3, 5, 3, 2),
        conv_weight=normal(4, 5, 3, 3), transpose_bias=normal(5), conv_bias=normal(4), stride=2,
        padding=1, output_padding=1,
        dilation=1, conv_padding=1,
    )  # fmt: skip


_CONV_TRANSPOSE_CONV: dict[str, Kind] = dict(
    input=Array(ndims=(3, 4)), transpose_weight=Array(ndims=(4,)), conv_weight=Array(ndims=(4,)),
    transpose_bias=_OPTIONAL, conv_bias=_OPTIONAL, stride=Knob(2, 1, "same"),
    padding=Knob(2, 0, "same"), output_padding=Knob(2, 0, "same"), dilation=Knob(2, 1, "same"),
    conv_padding=Knob(2, 0, "same", strings=("same", "valid")),
)  # fmt: skip
add(
    "conv_transpose_conv",
    Row(_make_conv_transpose_conv, _CONV_TRANSPOSE_CONV),
    reference.conv_transpose_conv,
)

# ---------------------------------------------------------------------------------------------
# gradient checking, the im2col budget, shape formulas

TABLE["numerical_gradient"] = Row(
    lambda: dict(
        function=reference.conv1d, args=[normal(1, 1, 4), normal(1, 1, 2)],
        grad_output=normal(1, 1, 3, seed=3), wrt=1, step=1e-6, kwargs={"padding": 0},
    ),
    dict(
        function=Function(), args=Items(bad=([None, None],)),
        grad_output=Array(exact=True, shares_dtype=False), wrt=Index(2), step=Real("gt0"),
        kwargs=Options(),
    ),
)  # fmt: skip
TABLE["check_gradients"] = Row(
    lambda: dict(
        function=reference.conv1d, backward=reference.conv1d_backward,
        args=[normal(1, 1, 4), normal(1, 1, 2), normal(1)], grad_output=normal(1, 1, 5, seed=3),
        differentiable=(0, 1, 2), kwargs={"padding": 1}, step=1e-6, atol=1e-6, rtol=1e-5,
    ),
    dict(
        function=Function(), backward=Function(), args=Items(), grad_output=Array(exact=True),
        differentiable=Indices(3), kwargs=Options(), step=Real("gt0"), atol=Real("ge0"),
        rtol=Real("ge0"),
    ),
)  # fmt: skip


def _set_budget(limit: Any) -> int:
    """Set the budget, read it back, and restore it whatever happens."""
    before = _windows.IM2COL_BUDGET["bytes"]
    try:
        reference.set_im2col_budget(limit)
        return _windows.IM2COL_BUDGET["bytes"]
    finally:
        _windows.IM2COL_BUDGET["bytes"] = before


TABLE["set_im2col_budget"] = Row(lambda: {"limit": 3 * 2**30}, {"limit": Count()}, _set_budget)


def _set_threads(count: Any) -> int:
    """Set the threads, read them back, and restore them whatever happens."""
    before = _grouped.GROUPED["threads"]
    try:
        reference.set_threads(count)
        return _grouped.GROUPED["threads"]
    finally:
        _grouped.GROUPED["threads"] = before


TABLE["set_threads"] = Row(lambda: {"count": 2}, {"count": Count()}, _set_threads)


def _shape_row(valid: Kwargs, **kinds: Kind) -> Row:
    """A shape formula over two dimensions, every argument a tuple (so that an int for one of
    them still means the same, and a tuple of another length disagrees)."""
    return Row(lambda: dict(valid), {name: kinds.get(name, Knob(2)) for name in valid})


_SIZES = {"size": (7, 8), "kernel_size": (3, 2), "stride": (2, 2), "padding": (1, 1)}
TABLE["conv_output_size"] = _shape_row({**_SIZES, "dilation": (1, 2)}, padding=Knob(2, 0))
TABLE["conv_transpose_output_size"] = _shape_row(
    {**_SIZES, "size": (3, 4), "output_padding": (1, 1), "dilation": (1, 1)},
    padding=Knob(2, 0),
    output_padding=Knob(2, 0),
)
TABLE["pool_output_size"] = _shape_row(
    {**_SIZES, "kernel_size": (3, 3), "dilation": (1, 1), "ceil_mode": True},
    stride=Knob(2, optional=True),
    padding=Knob(2, 0),
    ceil_mode=Flag(),
)
TABLE["same_padding"] = _shape_row({"kernel_size": (3, 4), "dilation": (2, 2)})

# ---------------------------------------------------------------------------------------------
# layer descriptions (constructor and methods), the builders, receptive fields


def summary(layer: Any, input_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """What a description answers: output shape, parameters, multiply-adds, FLOPs."""
    answers: tuple[Any, ...] = (
        layer.output_shape(input_shape),
        layer.parameter_count(),
        layer.macs(input_shape),
        layer.flops(input_shape),
    )
    if hasattr(layer, "bias_adds"):
        answers += (layer.bias_adds(input_shape),)
    return answers


_CONV = dict(
    dims=2, in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, dilation=1,
    groups=2, bias=True,
)  # fmt: skip
_CONV_KINDS: dict[str, Kind] = dict(
    dims=Count(), in_channels=Count(), out_channels=Count(), kernel_size=Knob(2),
    stride=Knob(2), padding=Knob(2, 0, strings=("same", "valid")), dilation=Knob(2),
    groups=Count(), bias=Flag(),
)  # fmt: skip
_POOL = dict(kind="max", dims=2, kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
_POOL_KINDS: dict[str, Kind] = dict(
    kind=Choice(("max", "avg")), dims=Count(), kernel_size=Knob(2),
    stride=Knob(2, optional=True), padding=Knob(2, 0), dilation=Knob(2), ceil_mode=Flag(),
)  # fmt: skip
_STACK_BAD = ([3], ["conv"], [{"kernel_size": 3}], [[BatchNorm(3)]])


def _stack() -> Kwargs:
    return {"layers": (Conv(2, 3, 4, 3, padding=1), BatchNorm(4), Pool("avg", 2, 2))}


def _residual() -> Kwargs:
    body = Sequential((Conv(2, 3, 3, 3, padding=1), BatchNorm(3)))
    return {"body": body, "shortcut": Sequential((Conv(2, 3, 3, 1),))}


# name: (valid arguments, kinds, a valid input shape, whether a longer shape is valid too)
_LAYERS: dict[str, tuple[Callable[[], Kwargs], dict[str, Kind], tuple[int, ...], bool]] = {
    "Conv": (lambda: dict(_CONV), _CONV_KINDS, (2, 4, 7, 7), False),
    "ConvTranspose": (
        lambda: {**_CONV, "output_padding": 1},
        {**_CONV_KINDS, "padding": Knob(2, 0), "output_padding": Knob(2, 0)},
        (2, 4, 3, 3),
        False,
    ),
    "Linear": (
        lambda: {"in_features": 5, "out_features": 3, "bias": True},
        {"in_features": Count(), "out_features": Count(), "bias": Flag()},
        (2, 4, 5),
        True,
    ),
    "Pool": (lambda: dict(_POOL), _POOL_KINDS, (2, 3, 7, 7), False),
    "BatchNorm": (
        lambda: {"num_features": 3, "affine": True},
        {"num_features": Count(), "affine": Flag()},
        (2, 3, 4, 4),
        True,
    ),
    "Sequential": (_stack, {"layers": Items(bad=_STACK_BAD)}, (2, 3, 6, 6), False),
    "Residual": (_residual, {"body": Layer(), "shortcut": Layer(False)}, (2, 3, 5, 5), False),
}


def _layer_rows(name: str) -> None:
    make, kinds, input_shape, longer_ok = _LAYERS[name]
    cls = getattr(reference, name)
    TABLE[name] = Row(make, kinds, lambda **kwargs: summary(cls(**kwargs), input_shape))
    for method, function in inspect.getmembers(cls, inspect.isfunction):
        if method.startswith("_"):
            continue

        def bound(method: str = method) -> Callable[..., Any]:
            return lambda **kwargs: getattr(cls(**make()), method)(**kwargs)

        if "input_shape" in inspect.signature(function).parameters:
            shape_kinds: dict[str, Kind] = {"input_shape": Shape(longer=not longer_ok)}
            TABLE[f"{name}.{method}"] = Row(
                lambda: {"input_shape": input_shape}, shape_kinds, bound()
            )
        else:
            TABLE[f"{name}.{method}"] = Row(dict, {}, bound())


for _name in _LAYERS:
    _layer_rows(_name)

TABLE["Field"] = Row(
    lambda: {"size": 5, "jump": 2, "start": -1},
    {"size": Count(), "jump": Count(), "start": Count(None)},
    lambda **kwargs: (Field(**kwargs), Field(**kwargs).span(3)),
)
TABLE["Field.span"] = Row(
    lambda: {"index": 3}, {"index": Count(0)}, lambda **kwargs: Field(5, 2, -1).span(**kwargs)
)


def _identity_block() -> Residual:
    return Residual(Sequential((Conv(2, 1, 1, 3, 1, 1),)))


_FIELD_STACK = [Conv(2, 1, 1, 3, 2, 1), Pool("max", 2, 2), _identity_block()]
# the same stack as mappings: the same fields
_FIELD_MAPPINGS = [
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 2, "stride": None},
    _identity_block(),
]
_FIELD_BAD = (
    [3], ["conv"], [{"kernel": 3}], [{"kernel_size": 3, "strides": 2}], [{"kernel_size": 0}],
    [{"kernel_size": 3, "stride": 0}], [{"kernel_size": 2.0}], [{"kernel_size": True}],
    [{"kernel_size": (3, 3, 3)}], [{"kernel_size": 3, "padding": -1}],
    [{"kernel_size": 3, "padding": "full"}], [{"kernel_size": 3, "padding": "same", "stride": 2}],
    [{"kernel_size": 3, "dilation": 0}], [Conv(1, 1, 1, 3)], [ConvTranspose(2, 1, 1, 3)],
    [Linear(2, 2)],
)  # fmt: skip
TABLE["receptive_field"] = Row(
    lambda: {"layers": list(_FIELD_STACK), "dims": 2},
    {"layers": Items(bad=_FIELD_BAD, alike=(_FIELD_MAPPINGS,)), "dims": Count()},
)


def _built(builder: Callable[..., Any]) -> Callable[..., Any]:
    return lambda **kwargs: summary(builder(**kwargs), (2, 3, 6, 6))


TABLE["layers.depthwise_separable"] = Row(
    lambda: dict(
        dims=2, in_channels=3, out_channels=4, kernel_size=3, multiplier=2, stride=1,
        padding=1, bias=True,
    ),
    dict(
        dims=Count(), in_channels=Count(), out_channels=Count(), kernel_size=Knob(2),
        multiplier=Count(), stride=Knob(2), padding=Knob(2, 0, strings=("same", "valid")),
        bias=Flag(),
    ),
    _built(layer_module.depthwise_separable),
)  # fmt: skip
TABLE["layers.basic_residual_block"] = Row(
    lambda: {"in_channels": 3, "out_channels": 4, "stride": 2},
    {"in_channels": Count(), "out_channels": Count(), "stride": Knob(2)},
    _built(layer_module.basic_residual_block),
)
TABLE["layers.patch_embedding"] = Row(
    lambda: {"in_channels": 3, "embed_dim": 8, "patch": 2},
    {"in_channels": Count(), "embed_dim": Count(), "patch": Count()},
    _built(layer_module.patch_embedding),
)
TABLE["layers.product_flops"] = Row(lambda: {"macs": 10}, {"macs": Count(0)})

# ---------------------------------------------------------------------------------------------
# looking a row up


def public_names() -> set[str]:
    """Everything the package exports, its classes' public methods, and the public functions
    of reference.layers (the builders, which the package does not export)."""
    names = set()
    for name in reference.__all__:
        names.add(name)
        value = getattr(reference, name)
        if inspect.isclass(value):
            for method, _ in inspect.getmembers(value, inspect.isfunction):
                if not method.startswith("_"):
                    names.add(f"{name}.{method}")
    for name, function in inspect.getmembers(layer_module, inspect.isfunction):
        if not name.startswith("_") and function.__module__ == layer_module.__name__:
            names.add(f"layers.{name}")
    return names


def target(name: str) -> Any:
    """The public object a row is about."""
    if name.startswith("layers."):
        return getattr(layer_module, name.removeprefix("layers."))
    owner, _, method = name.partition(".")
    value = getattr(reference, owner)
    return getattr(value, method) if method else value


def parameters(name: str) -> list[str]:
    signature = inspect.signature(target(name))
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def valid_kwargs(name: str) -> Kwargs:
    """The row's keyword arguments, every parameter given (defaults filled in)."""
    signature = inspect.signature(target(name))
    kwargs = TABLE[name].make()
    for parameter in parameters(name):
        if parameter not in kwargs:
            kwargs[parameter] = signature.parameters[parameter].default
    return kwargs


def caller(name: str) -> Callable[..., Any]:
    return TABLE[name].call or target(name)


def _derivative_rows() -> None:
    """``<op>_jvp`` and ``<op>_double_backward`` rows from the op's own: its arguments plus
    ``tangents`` (jvp) or ``grad_output`` and ``grad_grads`` (double backward), one array per
    differentiable argument (None where the argument is None), which must match exactly."""
    from conformance.catalogue import BY_NAME

    for op, spec in BY_NAME.items():
        if spec.reference_jvp is None or op not in TABLE:
            continue  # not differentiable, or judged forward and backward only
        row, backward_row = TABLE[op], TABLE[f"{op}_backward"]

        def directions(kwargs: Kwargs, names: tuple[str, ...] = spec.differentiable) -> tuple:
            return tuple(
                None if kwargs.get(n) is None else normal(*np.shape(kwargs[n]), seed=11)
                for n in names
            )

        def make_jvp(row: Row = row, directions: Callable[..., tuple] = directions) -> Kwargs:
            kwargs = row.make()
            return {"tangents": directions(kwargs), **kwargs}

        def make_double(
            row: Row = backward_row, directions: Callable[..., tuple] = directions
        ) -> Kwargs:
            kwargs = row.make()
            return {"grad_grads": directions(kwargs), **kwargs}

        wrong_length = (((None,) * (len(spec.differentiable) + 1)),)
        # the derivatives read batch norm's running statistics, never write them (as the
        # backward): read-only ones are fine
        kinds = _norm_kinds("same") if op == "batch_norm" else row.kinds
        TABLE[f"{op}_jvp"] = Row(
            make_jvp, {"tangents": Items(bad=wrong_length), **kinds}, also=row.also
        )
        TABLE[f"{op}_double_backward"] = Row(
            make_double,
            {"grad_grads": Items(bad=wrong_length), **backward_row.kinds},
            also=backward_row.also,
        )


_derivative_rows()
TABLE["check_jvp"] = Row(
    lambda: dict(
        function=reference.conv1d, jvp=reference.conv1d_jvp,
        args=[normal(1, 1, 4), normal(1, 1, 2), normal(1)],
        tangents=[normal(1, 1, 4, seed=5), normal(1, 1, 2, seed=5), normal(1, seed=5)],
        differentiable=(0, 1, 2), kwargs={"padding": 1}, step=1e-6, atol=1e-6, rtol=1e-5,
    ),
    dict(
        function=Function(), jvp=Function(), args=Items(), tangents=Items(),
        differentiable=Indices(3), kwargs=Options(), step=Real("gt0"), atol=Real("ge0"),
        rtol=Real("ge0"),
    ),
)  # fmt: skip
TABLE["check_double_backward"] = Row(
    lambda: dict(
        backward=reference.conv1d_backward, double_backward=reference.conv1d_double_backward,
        args=[normal(1, 1, 4), normal(1, 1, 2), normal(1)], grad_output=normal(1, 1, 5, seed=3),
        grad_grads=[normal(1, 1, 4, seed=5), normal(1, 1, 2, seed=5), normal(1, seed=5)],
        differentiable=(0, 1, 2), kwargs={"padding": 1}, step=1e-6, atol=1e-6, rtol=1e-5,
    ),
    dict(
        backward=Function(), double_backward=Function(), args=Items(),
        grad_output=Array(exact=True), grad_grads=Items(), differentiable=Indices(3),
        kwargs=Options(), step=Real("gt0"), atol=Real("ge0"), rtol=Real("ge0"),
    ),
)  # fmt: skip
