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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reference._arguments import ntuple
from reference.layers import Conv, Pool, Residual, Sequential


@dataclass(frozen=True)
class Field:
    size: int  # R: inputs spanned by one output, holes from dilation included
    jump: int  # J: input distance between neighbouring outputs
    start: int  # S: first input coordinate of output 0's field (negative in the padding)

    def span(self, index: int) -> tuple[int, int]:
        """First and last input coordinate seen by output ``index``."""
        first = self.start + index * self.jump
        return first, first + self.size - 1


def _knobs(layer: Any, dims: int) -> tuple[tuple[int, ...], ...]:
    kernel = ntuple(layer.kernel_size, "kernel_size", dims)
    stride = kernel if getattr(layer, "stride", 1) is None else ntuple(layer.stride, "stride", dims)
    padding = getattr(layer, "padding", 0)
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = tuple(
            (d * (k - 1)) // 2
            for k, d in zip(kernel, ntuple(layer.dilation, "dilation", dims), strict=True)
        )
    return (
        kernel,
        stride,
        ntuple(padding, "padding", dims),
        ntuple(getattr(layer, "dilation", 1), "dilation", dims),
    )


def _through(layer: Any, fields: tuple[Field, ...]) -> tuple[Field, ...]:
    dims = len(fields)
    if isinstance(layer, Sequential):
        for inner in layer.layers:
            fields = _through(inner, fields)
        return fields
    if isinstance(layer, Residual):
        body = _through(layer.body, fields)
        skip = fields if layer.shortcut is None else _through(layer.shortcut, fields)
        merged = []
        for a, b in zip(body, skip, strict=True):
            if a.jump != b.jump:
                raise ValueError(f"residual paths disagree on the jump: {a.jump} and {b.jump}")
            start = min(a.start, b.start)
            end = max(a.start + a.size, b.start + b.size)
            merged.append(Field(end - start, a.jump, start))
        return tuple(merged)
    if not isinstance(layer, (Conv, Pool)) and not hasattr(layer, "kernel_size"):
        return fields  # BatchNorm, activations: one input per output
    kernel, stride, padding, dilation = _knobs(layer, dims)
    return tuple(
        Field(f.size + d * (k - 1) * f.jump, f.jump * s, f.start - p * f.jump)
        for f, k, s, p, d in zip(fields, kernel, stride, padding, dilation, strict=True)
    )


def receptive_field(layers: Sequence[Any], dims: int = 1) -> list[tuple[Field, ...]]:
    """The field after each layer, per spatial dimension.

    ``layers`` are layer descriptions (reference.layers), or any objects with kernel_size,
    stride, padding and dilation attributes; a Residual's field is its paths' union.
    """
    fields = tuple(Field(1, 1, 0) for _ in range(dims))
    result = []
    for layer in layers:
        fields = _through(layer, fields)
        result.append(fields)
    return result
