"""Receptive fields through a stack of layers (the notebook's section 6, generalized).

Per spatial dimension, with R the field size, J the jump (the input distance between
neighbouring outputs) and S the input coordinate where output 0's field starts, a layer of
kernel k, stride s, padding p and dilation d maps (R, J, S) to

    R' = R + d*(k-1) * J,   J' = J * s,   S' = S - p * J

(Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019). Output q of the last layer sees inputs S + q*J ... S + q*J + R - 1, before
clipping to the input. A residual block's field is the union of its paths' fields; the paths
must agree on the jump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from reference._arguments import (
    describe,
    int_arg,
    is_int,
    is_sequence,
    non_negative,
    ntuple,
    positive,
    positive_int,
)
from reference.layers import BatchNorm, Conv, ConvTranspose, Linear, Pool, Residual, Sequential

EXPECTED = (
    "a Conv, Pool, BatchNorm, Sequential or Residual description (reference.layers), or an "
    "object or mapping with kernel_size (and optionally stride, padding, dilation)"
)


@dataclass(frozen=True)
class Field:
    size: int  # R: inputs spanned by one output, holes from dilation included
    jump: int  # J: input distance between neighbouring outputs
    start: int  # S: first input coordinate of output 0's field (negative in the padding)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", positive_int(self.size, "size"))
        object.__setattr__(self, "jump", positive_int(self.jump, "jump"))
        object.__setattr__(self, "start", int_arg(self.start, "start"))

    def span(self, index: int) -> tuple[int, int]:
        """First and last input coordinate seen by output ``index``."""
        index = int_arg(index, "index")
        if index < 0:
            raise ValueError(f"index must be a non-negative output position, got {index}")
        first = self.start + index * self.jump
        return first, first + self.size - 1


def _knobs(layer: Any, dims: int, where: str) -> tuple[tuple[int, ...], ...]:
    """kernel_size, stride, padding and dilation per dimension, each checked as torch checks
    it (a stride of 0 or a negative padding is no layer); an error names the layer."""
    try:
        kernel = positive(ntuple(layer.kernel_size, "kernel_size", dims), "kernel_size")
        stride_value = getattr(layer, "stride", 1)
        stride = (
            kernel
            if stride_value is None
            else positive(ntuple(stride_value, "stride", dims), "stride")
        )
        dilation = positive(ntuple(getattr(layer, "dilation", 1), "dilation", dims), "dilation")
        padding = getattr(layer, "padding", 0)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
            if padding == "same" and stride != (1,) * dims:
                raise ValueError(f"padding='same' requires stride 1, got stride={stride}")
            # 'same' puts the odd extra element at the end: the field starts half before
            same = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation, strict=True))
            pads = same if padding == "same" else (0,) * dims
        else:
            pads = non_negative(ntuple(padding, "padding", dims), "padding")
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None
    return kernel, stride, pads, dilation


def _readable(layer: Any, where: str) -> Any:
    """The layer as something with attributes, or a TypeError naming it and what was
    expected: a layer that cannot be read is never taken for a 1x1 layer."""
    if isinstance(layer, Mapping):
        if "kernel_size" not in layer:
            raise TypeError(
                f"{where}: a mapping without kernel_size ({sorted(layer, key=repr)}); expected "
                f"{EXPECTED}"
            )
        unknown = set(layer) - {"kernel_size", "stride", "padding", "dilation"}
        if unknown:
            raise TypeError(
                f"{where}: unknown keys {sorted(unknown, key=repr)}; expected {EXPECTED}"
            )
        return SimpleNamespace(**layer)
    if isinstance(layer, (ConvTranspose, Linear)):  # no integer (R, J, S) describes them
        raise TypeError(
            f"{where}: a {type(layer).__name__} has no receptive field in this closed form (a "
            f"transposed convolution's jump is 1/stride; a linear layer sees everything); "
            f"expected {EXPECTED}"
        )
    if isinstance(layer, (Sequential, Residual, Conv, Pool, BatchNorm)):
        return layer
    if not hasattr(layer, "kernel_size"):
        raise TypeError(
            f"{where}: cannot read {type(layer).__name__} {layer!r}; expected {EXPECTED}"
        )
    return layer


def _through(layer: Any, fields: tuple[Field, ...], where: str = "layer") -> tuple[Field, ...]:
    dims = len(fields)
    layer = _readable(layer, where)
    if isinstance(layer, Sequential):
        for position, inner in enumerate(layer.layers):
            fields = _through(inner, fields, f"{where}.layers[{position}]")
        return fields
    if isinstance(layer, Residual):
        body = _through(layer.body, fields, f"{where}.body")
        skip = (
            fields
            if layer.shortcut is None
            else _through(layer.shortcut, fields, f"{where}.shortcut")
        )
        merged = []
        for a, b in zip(body, skip, strict=True):
            if a.jump != b.jump:
                raise ValueError(f"residual paths disagree on the jump: {a.jump} and {b.jump}")
            start = min(a.start, b.start)
            end = max(a.start + a.size, b.start + b.size)
            merged.append(Field(end - start, a.jump, start))
        return tuple(merged)
    if isinstance(layer, BatchNorm):
        return fields  # one input per output
    if isinstance(layer, (Conv, Pool)) and layer.dims != dims:
        raise ValueError(
            f"{where}: a {layer.dims}-d {type(layer).__name__} in a receptive field of "
            f"dims={dims}; pass dims={layer.dims}"
        )
    kernel, stride, padding, dilation = _knobs(layer, dims, where)
    return tuple(
        Field(f.size + d * (k - 1) * f.jump, f.jump * s, f.start - p * f.jump)
        for f, k, s, p, d in zip(fields, kernel, stride, padding, dilation, strict=True)
    )


def receptive_field(layers: Sequence[Any], dims: int = 1) -> list[tuple[Field, ...]]:
    """The field after each layer, per spatial dimension.

    ``layers`` are layer descriptions (reference.layers), or any objects or mappings with
    kernel_size and optionally stride, padding and dilation; a Residual's field is its paths'
    union. A layer it cannot read raises a TypeError naming it.
    """
    if isinstance(layers, Mapping) or not is_sequence(layers):
        raise TypeError(f"layers must be a sequence of layers, got {type(layers).__name__}")
    if not is_int(dims):
        raise TypeError(f"dims must be a positive int, got {describe(dims)}")
    if dims < 1:
        raise ValueError(f"dims must be a positive int, got {dims!r}")
    dims = int(dims)
    fields = tuple(Field(1, 1, 0) for _ in range(dims))
    result = []
    for position, layer in enumerate(layers):
        fields = _through(layer, fields, f"layers[{position}]")
        result.append(fields)
    return result
