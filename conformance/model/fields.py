"""Receptive fields in closed form, for every tensor a network's forward pass makes.

Two forms, both from the layers' knobs and the real tensors' sizes, never from values:

- The textbook form per spatial dimension, (R, J, S): field size, jump and the first input
  coordinate of output 0's field, through a layer of kernel k, stride s, padding p and
  dilation d: R' = R + d(k-1)J, J' = Js, S' = S - pJ (Araujo, Norris and Sim, "Computing
  Receptive Fields of Convolutional Neural Networks", Distill 2019; reference.receptive_field
  and the notebook's section 6). A sum or concatenation of branches takes their union (the
  residual block's field: the lowest start, the highest end; the branches must agree on the
  jump). An upsampling layer divides the jump: a transposed convolution gives J' = J/s,
  S' = S + J(p - d(k-1))/s, R' = R + J d(k-1)/s, the continuous-coordinate field that the
  integer field of every output phase lies within (nearest upsampling by f likewise, with
  d(k-1) replaced by f - 1). It runs into the padding: it is the field of an unbounded input.
- The exact form: per spatial dimension a boolean matrix, row o the input positions that
  output position o depends on, after the clipping at every layer's border, holes of
  dilation included; a layer's matrix product with its own connectivity gives the next one.
  A product of per-dimension sets is a box; a union of branches is a union of boxes. It is
  what the probe (conformance.model.probe) observes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np

from reference.shapes import same_padding

Box = tuple[np.ndarray, ...]  # one (positions, input size) boolean matrix per spatial dim


@dataclass(frozen=True)
class Textbook:
    """(R, J, S) of one spatial dimension; J is None once the positions are pooled away."""

    size: Fraction
    jump: Fraction | None
    start: Fraction


@dataclass(frozen=True)
class Field:
    """The field of every position of one tensor (module docstring)."""

    boxes: tuple[Box, ...]
    textbook: tuple[Textbook, ...] | None  # None: no closed form (``note`` says why)
    collapsed: bool = False  # the tensor has no spatial layout left (flatten, linear)
    note: str = ""
    unprobed: str = ""  # why the impulse probe cannot observe this field ('' if it can)

    def largest_span(self) -> tuple[int, ...]:
        """Per dimension, the widest input extent any position reaches (clipped, holes
        counted): what a probe sees."""
        spans = []
        for axis in range(len(self.boxes[0])):
            rows = np.zeros_like(self.boxes[0][axis])
            for box in self.boxes:
                rows = rows | np.broadcast_to(box[axis], rows.shape)
            present = rows.any(axis=1)
            if not present.any():
                spans.append(0)
                continue
            columns = np.arange(rows.shape[1])
            first = np.where(rows, columns, rows.shape[1]).min(axis=1)
            last = np.where(rows, columns, -1).max(axis=1)
            spans.append(int((last - first + 1)[present].max()))
        return tuple(spans)


def input_field(spatial: Sequence[int]) -> Field:
    """The network input: each position sees itself."""
    box = tuple(np.eye(n, dtype=bool) for n in spatial)
    one = Textbook(Fraction(1), Fraction(1), Fraction(0))
    return Field((box,), (one,) * len(spatial))


# ---- connectivity of one layer, per spatial dimension: (output positions, input positions)


def window_connectivity(
    size: int, out: int, kernel: int, stride: int, before: int, dilation: int
) -> np.ndarray:
    """Output q reads inputs q*stride - before + t*dilation, t < kernel, inside the input."""
    positions = np.arange(out)[:, None] * stride - before + np.arange(kernel)[None, :] * dilation
    rows = np.broadcast_to(np.arange(out)[:, None], positions.shape)
    inside = (positions >= 0) & (positions < size)
    connected = np.zeros((out, size), dtype=bool)
    connected[rows[inside], positions[inside]] = True
    return connected


def transposed_connectivity(
    size: int, out: int, kernel: int, stride: int, padding: int, dilation: int
) -> np.ndarray:
    """Input i reaches outputs i*stride - padding + t*dilation, t < kernel, inside the output
    (output_padding only lengthens the output)."""
    targets = np.arange(size)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    sources = np.broadcast_to(np.arange(size)[:, None], targets.shape)
    inside = (targets >= 0) & (targets < out)
    connected = np.zeros((out, size), dtype=bool)
    connected[targets[inside], sources[inside]] = True
    return connected


def adaptive_connectivity(size: int, out: int) -> np.ndarray:
    """torch's adaptive windows: floor(o*n/out) to ceil((o+1)*n/out), end excluded."""
    first = np.arange(out) * size // out
    end = -(-(np.arange(out) + 1) * size // out)
    columns = np.arange(size)[None, :]
    return (columns >= first[:, None]) & (columns < end[:, None])


def source_connectivity(sources: np.ndarray, size: int) -> np.ndarray:
    """Output o copies input sources[o] (-1: a constant, no input)."""
    connected = np.zeros((len(sources), size), dtype=bool)
    present = sources >= 0
    connected[np.flatnonzero(present), sources[present]] = True
    return connected


# ---- the two forms through one layer

Step = Callable[[Textbook], Textbook]


def window_step(kernel: int, stride: int, before: int, dilation: int) -> Step:
    def step(f: Textbook) -> Textbook:
        assert f.jump is not None
        return Textbook(
            f.size + dilation * (kernel - 1) * f.jump, f.jump * stride, f.start - before * f.jump
        )

    return step


def transposed_step(kernel: int, stride: int, padding: int, dilation: int) -> Step:
    def step(f: Textbook) -> Textbook:
        assert f.jump is not None
        reach = dilation * (kernel - 1)
        return Textbook(
            f.size + f.jump * Fraction(reach, stride),
            f.jump / stride,
            f.start + f.jump * Fraction(padding - reach, stride),
        )

    return step


def through(
    field: Field, connectivity: Sequence[np.ndarray], steps: Sequence[Step] | None
) -> Field:
    """The field after a layer acting on each spatial dimension separately."""
    boxes = tuple(
        tuple(
            (c.astype(np.float32) @ m.astype(np.float32)) > 0
            for c, m in zip(connectivity, box, strict=True)
        )
        for box in field.boxes
    )
    textbook, note = field.textbook, field.note
    if steps is None and textbook is not None:
        textbook, note = None, "no closed form for this layer"
    elif textbook is not None and steps is not None:
        if any(f.jump is None for f in textbook):
            textbook, note = None, "pooled positions have no jump"
        else:
            textbook = tuple(step(f) for step, f in zip(steps, textbook, strict=True))
    return replace(field, boxes=_deduplicated(boxes), textbook=textbook, note=note)


def _deduplicated(boxes: Sequence[Box]) -> tuple[Box, ...]:
    """The boxes without those another one contains (position by position)."""
    kept: list[Box] = []
    for box in boxes:
        if any(_contains(other, box) for other in kept):
            continue
        kept = [other for other in kept if not _contains(box, other)]
        kept.append(box)
    return tuple(kept)


def _contains(outer: Box, inner: Box) -> bool:
    return all(
        o.shape == i.shape and bool(np.all(i <= o)) for o, i in zip(outer, inner, strict=True)
    )


def union(fields: Sequence[Field]) -> Field:
    """The field of a sum or concatenation: each position sees what any branch sees there
    (a branch with one position, pooled, is broadcast to all)."""
    dims = len(fields[0].boxes[0])
    rows = [max(box[axis].shape[0] for f in fields for box in f.boxes) for axis in range(dims)]
    boxes = [
        tuple(np.broadcast_to(m, (n, m.shape[1])).copy() for m, n in zip(box, rows, strict=True))
        for f in fields
        for box in f.boxes
    ]
    unprobed = next((f.unprobed for f in fields if f.unprobed), "")
    merged = Field(_deduplicated(boxes), None, all(f.collapsed for f in fields), "", unprobed)
    missing = next((f.note for f in fields if f.textbook is None), None)
    if missing is not None:
        return replace(merged, note=missing)
    textbooks = [f.textbook for f in fields if f.textbook is not None]
    per_dim = []
    for axis in range(len(textbooks[0])):
        parts = [t[axis] for t in textbooks]
        jumps = {p.jump for p in parts}
        if None in jumps and len(jumps) > 1:
            return replace(merged, note="a branch pooled over the positions is broadcast")
        if len(jumps) > 1:
            shown = ", ".join(sorted(str(j) for j in jumps))
            return replace(merged, note=f"branches disagree on the jump: {shown}")
        start = min(p.start for p in parts)
        end = max(p.start + p.size for p in parts)
        per_dim.append(Textbook(end - start, jumps.pop(), start))
    return replace(merged, textbook=tuple(per_dim))


def collapse(field: Field, axes: Sequence[int] | None = None, keep: bool = False) -> Field:
    """Positions pooled together (a mean over space, flatten, a linear layer): the result
    sees the union of what they saw. ``axes``: the spatial axes pooled (default all);
    ``keep``: the pooled axes stay, of size 1, else the layout is gone."""
    dims = len(field.boxes[0])
    pooled = set(range(dims) if axes is None else axes)
    boxes = tuple(
        tuple(
            np.asarray(m.any(axis=0, keepdims=True)) if a in pooled else m
            for a, m in enumerate(box)
        )
        for box in field.boxes
    )
    textbook = field.textbook
    if textbook is not None:
        textbook = tuple(
            Textbook(t.size + (field.boxes[0][a].shape[0] - 1) * (t.jump or 0), None, t.start)
            if a in pooled
            else t
            for a, t in enumerate(textbook)
        )
    collapsed = field.collapsed or not keep
    return replace(field, boxes=_deduplicated(boxes), textbook=textbook, collapsed=collapsed)


def responses(field: Field, impulse: Sequence[int]) -> np.ndarray:
    """Which positions of the tensor see input position ``impulse`` (any over the boxes);
    a 0-d array for a tensor without layout."""
    seen: np.ndarray | None = None
    for box in field.boxes:
        columns = [m[:, i] for m, i in zip(box, impulse, strict=True)]
        cell = columns[0]
        for column in columns[1:]:
            cell = np.multiply.outer(cell, column)
        seen = cell if seen is None else seen | cell
    assert seen is not None
    return np.asarray(seen.any()) if field.collapsed else seen


def conv_pads(kernel: Sequence[int], padding: Any, dilation: Sequence[int]) -> tuple[int, ...]:
    """The padding before the first input, per dimension, of a conv's ``padding``."""
    dims = len(kernel)
    if padding == "valid":
        return (0,) * dims
    if padding == "same":
        return tuple(before for before, _ in same_padding(tuple(kernel), tuple(dilation)))
    return tuple(int(p) for p in _per_dim(padding, dims))


def _per_dim(value: Any, dims: int) -> tuple[Any, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) == dims else tuple(value) * dims
    return (value,) * dims


def window_layer(
    field: Field,
    spatial_in: Sequence[int],
    spatial_out: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    before: Sequence[int],
    dilation: Sequence[int],
) -> Field:
    """A convolution or pooling layer (its windows)."""
    dims = len(spatial_in)
    knobs = list(zip(spatial_in, spatial_out, kernel, stride, before, dilation, strict=True))
    connectivity = [window_connectivity(n, o, k, s, b, d) for n, o, k, s, b, d in knobs]
    steps = [window_step(k, s, b, d) for _, _, k, s, b, d in knobs]
    assert len(steps) == dims
    return through(field, connectivity, steps)


def adaptive_layer(field: Field, spatial_in: Sequence[int], spatial_out: Sequence[int]) -> Field:
    """Adaptive pooling: equal windows (a pool of kernel = stride = n/out) when out divides
    n, else windows of two sizes, which no (R, J, S) describes."""
    connectivity = [
        adaptive_connectivity(n, o) for n, o in zip(spatial_in, spatial_out, strict=True)
    ]
    if all(n % o == 0 for n, o in zip(spatial_in, spatial_out, strict=True)):
        steps = [
            window_step(n // o, n // o, 0, 1) for n, o in zip(spatial_in, spatial_out, strict=True)
        ]
        return through(field, connectivity, steps)
    moved = through(field, connectivity, None)
    return replace(moved, note="adaptive pooling with unequal windows has no (R, J, S)")


def transposed_layer(
    field: Field,
    spatial_in: Sequence[int],
    spatial_out: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> Field:
    knobs = list(zip(spatial_in, spatial_out, kernel, stride, padding, dilation, strict=True))
    connectivity = [transposed_connectivity(n, o, k, s, p, d) for n, o, k, s, p, d in knobs]
    steps = [transposed_step(k, s, p, d) for _, _, k, s, p, d in knobs]
    return through(field, connectivity, steps)


def copy_layer(
    field: Field, sources: Sequence[np.ndarray], steps: Sequence[Step] | None, note: str = ""
) -> Field:
    """A layer whose every output copies one input position (padding, nearest upsampling)."""
    sizes = [box_axis.shape[0] for box_axis in field.boxes[0]]
    connectivity = [source_connectivity(s, n) for s, n in zip(sources, sizes, strict=True)]
    moved = through(field, connectivity, steps)
    return replace(moved, note=note or moved.note) if steps is None else moved


def shift_step(before: int) -> Step:
    return lambda f: Textbook(f.size, f.jump, f.start - before * (f.jump or 0))


def nearest_step(factor: int) -> Step:
    def step(f: Textbook) -> Textbook:
        assert f.jump is not None
        return Textbook(
            f.size + f.jump * Fraction(factor - 1, factor),
            f.jump / factor,
            f.start - f.jump * Fraction(factor - 1, factor),
        )

    return step


def describe(field: Field | None) -> tuple[str, str, str]:
    """(receptive field, jump, start) for a table: one value per dimension, 'x'-joined, or a
    single value when every dimension agrees."""
    if field is None or field.textbook is None:
        return "-", "-", "-"

    def show(values: Sequence[Fraction | None]) -> str:
        texts = ["-" if v is None else _number(v) for v in values]
        return texts[0] if len(set(texts)) == 1 else "x".join(texts)

    textbook = field.textbook
    return (
        show([t.size for t in textbook]),
        show([t.jump for t in textbook]),
        show([t.start for t in textbook]),
    )


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"
