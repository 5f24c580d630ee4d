"""Catalogue entries of the convolution family: conv1d-3d and conv_transpose1d-3d."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec, Region, per_dim
from conformance.catalogue.strategies.conv import conv_examples, conv_transpose_examples
from conformance.catalogue.strategies.knobs import omitting_defaults
from reference.conv import conv_output_shape
from reference.conv_transpose import conv_transpose_output_shape
from reference.padding import PADDING_MODES
from reference.shapes import same_padding


def _dims(example: Example) -> int:
    weight = example.arrays["weight"]
    assert weight is not None
    return weight.ndim - 2


def _knob(name: str) -> Callable[[Example], tuple[Any, ...]]:
    return lambda example: per_dim(example.config[name], _dims(example))


def _batch_and_spatial(example: Example) -> tuple[int, tuple[int, ...]]:
    x = example.arrays["input"]
    assert x is not None
    dims = _dims(example)
    return (1 if x.ndim == dims + 1 else x.shape[0]), tuple(x.shape[-dims:])


def _conv_pads(example: Example) -> tuple[tuple[int, int], ...]:
    weight = example.arrays["weight"]
    assert weight is not None
    padding, dims = example.config["padding"], _dims(example)
    if padding == "same":
        return same_padding(weight.shape[2:], per_dim(example.config["dilation"], dims))
    if padding == "valid":
        return ((0, 0),) * dims
    return tuple((p, p) for p in per_dim(padding, dims))


def conv_terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
    weight = example.arrays["weight"]
    assert weight is not None
    groups, taps = example.config["groups"], math.prod(weight.shape[2:])
    batch = _batch_and_spatial(example)[0]
    per_output_position = batch * math.prod(output_shape[-_dims(example) :])
    fold = 1  # padding modes other than zeros fold several padded positions onto one input
    if example.config["padding_mode"] != "zeros":
        fold = math.prod(1 + before + after for before, after in _conv_pads(example))
    return {
        "output": weight.shape[1] * taps + (example.arrays["bias"] is not None),
        "grad_input": weight.shape[0] // groups * taps * fold,
        "grad_weight": per_output_position,
        "grad_bias": per_output_position,
    }


def conv_transpose_terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
    weight = example.arrays["weight"]
    assert weight is not None
    groups, taps = example.config["groups"], math.prod(weight.shape[2:])
    batch, spatial = _batch_and_spatial(example)
    return {
        "output": weight.shape[0] // groups * taps + (example.arrays["bias"] is not None),
        "grad_input": weight.shape[1] * taps,
        "grad_weight": batch * math.prod(spatial),
        "grad_bias": batch * math.prod(output_shape[-_dims(example) :]),
    }


def _is_depthwise(example: Example, multiplier: bool) -> bool:
    weight, x = example.arrays["weight"], example.arrays["input"]
    assert weight is not None and x is not None
    groups = example.config["groups"]
    channels = x.shape[-_dims(example) - 1]
    transposed = "output_padding" in example.config
    per_group_out = weight.shape[1] if transposed else weight.shape[0] // groups
    return groups == channels > 1 and (per_group_out > 1) == multiplier


def _kernel_spans_padded_input(example: Example) -> bool:
    weight = example.arrays["weight"]
    assert weight is not None
    _, spatial = _batch_and_spatial(example)
    dilation = _knob("dilation")(example)
    return any(
        d * (k - 1) + 1 == size + before + after
        for k, d, size, (before, after) in zip(
            weight.shape[2:], dilation, spatial, _conv_pads(example), strict=True
        )
    )


def _even_same(example: Example) -> bool:
    weight = example.arrays["weight"]
    assert weight is not None
    if example.config["padding"] != "same":
        return False
    dilation = _knob("dilation")(example)
    return any(d * (k - 1) % 2 for k, d in zip(weight.shape[2:], dilation, strict=True))


def _is_unbatched(example: Example) -> bool:
    x = example.arrays["input"]
    assert x is not None
    return x.ndim == _dims(example) + 1


def _one_strided_output_column(example: Example) -> bool:
    """A batch of two or more where some strided axis has one output position: a kernel
    that walks rows or batch planes by the stride finds one column per axis, where an
    implementation that steps by the wrong extent reads the wrong row or image."""
    batch, spatial = _batch_and_spatial(example)
    weight = example.arrays["weight"]
    assert weight is not None
    stride, dilation = _knob("stride")(example), _knob("dilation")(example)
    for size, (before, after), k, s, d in zip(
        spatial, _conv_pads(example), weight.shape[2:], stride, dilation, strict=True
    ):
        if s > 1 and (size + before + after - d * (k - 1) - 1) // s + 1 == 1:
            return batch >= 2
    return False


def _common_regions() -> dict[str, Region]:
    return {
        "stride > 1": lambda e: max(_knob("stride")(e)) > 1,
        "dilation > 1": lambda e: max(_knob("dilation")(e)) > 1,
        "groups > 1": lambda e: e.config["groups"] > 1,
        "depthwise": lambda e: _is_depthwise(e, multiplier=False),
        "depthwise x multiplier": lambda e: _is_depthwise(e, multiplier=True),
        "unbatched": _is_unbatched,
        "bias": lambda e: e.arrays["bias"] is not None,
    }


def _padding_mode_is(mode: str) -> Region:
    return lambda example: bool(example.config["padding_mode"] == mode)


def conv_regions() -> dict[str, Region]:
    regions = _common_regions()
    for mode in PADDING_MODES:
        regions[f"padding_mode={mode}"] = _padding_mode_is(mode)
    regions["padding='same', even kernel"] = _even_same
    regions["padding='valid'"] = lambda e: e.config["padding"] == "valid"
    regions["padding > 0 (ints)"] = lambda e: (
        not isinstance(e.config["padding"], str) and max(_knob("padding")(e)) > 0
    )
    regions["kernel spans padded input"] = _kernel_spans_padded_input
    regions["batch >= 2, a strided axis with one output column"] = _one_strided_output_column
    return regions


def conv_transpose_regions() -> dict[str, Region]:
    regions = _common_regions()
    regions["padding > 0"] = lambda e: max(_knob("padding")(e)) > 0
    regions["output_padding > 0"] = lambda e: max(_knob("output_padding")(e)) > 0
    regions["kernel 1 with output_padding > padding"] = _kernel_one_output_padding
    return regions


def _kernel_one_output_padding(example: Example) -> bool:
    """On some axis a kernel of 1 and output_padding above padding: the output's last
    positions are reached by no product at all (only the bias, or 0)."""
    weight = example.arrays["weight"]
    assert weight is not None
    return any(
        k == 1 and op > p
        for k, op, p in zip(
            weight.shape[2:],
            _knob("output_padding")(example),
            _knob("padding")(example),
            strict=True,
        )
    )


def _spec(
    name: str,
    examples: Callable[[int], Any],
    terms: Any,
    regions: Any,
    dims: int,
    output_shape: Callable[..., tuple[int, ...]] | None = None,
) -> OpSpec:
    return OpSpec(
        name=name,
        family="convolution",
        reference=getattr(reference, name),
        reference_backward=getattr(reference, f"{name}_backward"),
        array_args=("input", "weight", "bias"),
        differentiable=("input", "weight", "bias"),
        examples=lambda: omitting_defaults(examples, getattr(reference, name))(dims),
        terms=terms,
        coverage=regions(),
        output_shape=output_shape,
    )


SPECS: tuple[OpSpec, ...] = (
    *(
        _spec(
            f"conv{d}d", conv_examples, conv_terms, conv_regions, d, partial(conv_output_shape, d)
        )
        for d in (1, 2, 3)
    ),
    *(
        _spec(
            f"conv_transpose{d}d",
            conv_transpose_examples,
            conv_transpose_terms,
            conv_transpose_regions,
            d,
            partial(conv_transpose_output_shape, d),
        )
        for d in (1, 2, 3)
    ),
)
