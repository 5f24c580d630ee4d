"""Adaptive average and max pooling over 1-3 spatial dimensions, and their gradients.

Output i along an axis of input size L and output size O pools the input range
[floor(i*L/O), ceil((i+1)*L/O)) (torch's start_index / end_index), so windows vary in size
and overlap when O does not divide L, and repeat elements when O > L. Max follows the same
rules as max pooling (last NaN wins, else the first maximum); indices are flat within the
input's spatial dimensions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference._arguments import as_float_array, batched, describe, flag, is_int, is_sequence
from reference.conv import check_grad_output
from reference.pool import first_max_index

OutputSize = int | None | Sequence[int | None]


@functools.lru_cache(maxsize=512)
def _adaptive_grids(
    spatial: tuple[int, ...], out_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    dims = len(out_size)
    valid = np.ones((), dtype=bool)
    flat = np.zeros((), dtype=np.int64)
    slots = []
    for axis, (size, out) in enumerate(zip(spatial, out_size, strict=True)):
        index = np.arange(out)
        start = (index * size) // out
        end = -((-(index + 1) * size) // out)  # ceil((i+1) * L / O)
        width = int((end - start).max())
        position = start[:, None] + np.arange(width)[None, :]
        inside = position < end[:, None]
        shape = [1] * (2 * dims)
        shape[axis], shape[dims + axis] = out, width
        valid = valid & inside.reshape(shape)
        clipped = np.minimum(position, size - 1)
        flat = flat + clipped.reshape(shape) * math.prod(spatial[axis + 1 :])
        slots.append(width)
    full = (*out_size, *slots)
    flat_shape = (*out_size, math.prod(slots))
    grids = tuple(np.array(np.broadcast_to(g, full)).reshape(flat_shape) for g in (valid, flat))
    for grid in grids:
        grid.flags.writeable = False
    return grids[0], grids[1]


@dataclass(frozen=True)
class AdaptivePlan:
    input: np.ndarray  # batched
    unbatched: bool
    out_size: tuple[int, ...]

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.input.shape[2:])

    def grids(self) -> tuple[np.ndarray, np.ndarray]:
        """(valid, flat index) per output position and window slot, (*out_size, slots),
        read-only: the geometry's own, computed once (every example's oracle and bound ask)."""
        return _adaptive_grids(self.spatial, self.out_size)

    def taps(self, flat: np.ndarray) -> np.ndarray:
        planes = self.input.reshape(*self.input.shape[:2], math.prod(self.input.shape[2:]))
        return planes[:, :, flat]

    def scatter(self, positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Add ``weights`` (N, C, ...) into the flat input positions ``positions`` names
        (broadcastable to the weights' shape)."""
        batch, channels = self.input.shape[:2]
        size = math.prod(self.spatial)
        planes = np.arange(batch * channels).reshape(batch, channels, *([1] * (weights.ndim - 2)))
        target = np.broadcast_to(planes * size + positions, weights.shape)
        total = np.bincount(
            target.ravel(), weights=weights.ravel(), minlength=batch * channels * size
        )
        return total.reshape(self.input.shape).astype(self.input.dtype)

    def finish(self, out: np.ndarray) -> np.ndarray:
        return out[0] if self.unbatched else out


def plan_adaptive(dims: int, op: str, input: np.ndarray, output_size: OutputSize) -> AdaptivePlan:
    input = as_float_array(input, "input")
    x, unbatched = batched(input, dims, op)
    if any(size <= 0 for size in x.shape[2:]):
        raise ValueError(f"input's spatial size must be positive, got shape {input.shape}")
    if output_size is None or is_int(output_size):
        requested: list[Any] = [output_size] * dims
    elif is_sequence(output_size):
        assert isinstance(output_size, Sequence)
        requested = list(output_size)
        for out in requested:
            if out is not None and not is_int(out):
                raise TypeError(
                    f"output_size must hold ints or None, got {describe(out)} in {output_size!r}"
                )
        if len(requested) != dims:
            raise ValueError(f"output_size must have {dims} elements, got {output_size!r}")
    else:
        raise TypeError(f"output_size must be an int, None or a tuple, got {describe(output_size)}")
    out_size = []
    for size, out in zip(x.shape[2:], requested, strict=True):
        if out is None:
            out = size
        if out < 0:
            raise ValueError(f"output_size must be non-negative, got {output_size!r}")
        out_size.append(int(out))
    return AdaptivePlan(x, unbatched, tuple(out_size))


def _empty(plan: AdaptivePlan) -> np.ndarray:
    return np.zeros((*plan.input.shape[:2], *plan.out_size), dtype=plan.input.dtype)


def _max(plan: AdaptivePlan) -> tuple[np.ndarray, np.ndarray]:
    if 0 in plan.out_size:
        return _empty(plan), _empty(plan).astype(np.int64)
    valid, flat = plan.grids()
    taps = plan.taps(flat)
    choice = first_max_index(taps, valid)[..., np.newaxis]
    values = np.take_along_axis(taps, choice, axis=-1)[..., 0]
    indices = np.take_along_axis(np.broadcast_to(flat, taps.shape), choice, axis=-1)[..., 0]
    return values, indices


Adaptive = Callable[..., Any]


def _make(dims: int) -> tuple[Adaptive, Adaptive, Adaptive, Adaptive]:
    avg_op, max_op = f"adaptive_avg_pool{dims}d", f"adaptive_max_pool{dims}d"

    def adaptive_avg_pool(input: np.ndarray, output_size: OutputSize) -> np.ndarray:
        plan = plan_adaptive(dims, avg_op, input, output_size)
        if 0 in plan.out_size:
            return plan.finish(_empty(plan))
        valid, flat = plan.grids()
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN
            sums = np.where(valid, plan.taps(flat), 0).sum(axis=-1)
        return plan.finish((sums / valid.sum(axis=-1)).astype(plan.input.dtype))

    def adaptive_avg_pool_backward(
        grad_output: np.ndarray, input: np.ndarray, output_size: OutputSize
    ) -> tuple[np.ndarray]:
        plan = plan_adaptive(dims, avg_op, input, output_size)
        shape = (*plan.input.shape[:2], *plan.out_size)
        grad = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        if 0 in plan.out_size:
            return (plan.finish(np.zeros_like(plan.input)),)
        valid, flat = plan.grids()
        share = np.where(valid, (grad / valid.sum(axis=-1))[..., np.newaxis], 0.0)
        return (plan.finish(plan.scatter(flat, share)),)

    def adaptive_max_pool(
        input: np.ndarray, output_size: OutputSize, return_indices: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        plan = plan_adaptive(dims, max_op, input, output_size)
        with_indices = flag(return_indices, "return_indices")
        values, indices = _max(plan)
        if with_indices:
            return plan.finish(values), plan.finish(indices)
        return plan.finish(values)

    def adaptive_max_pool_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        output_size: OutputSize,
        return_indices: bool = False,
    ) -> tuple[np.ndarray]:
        plan = plan_adaptive(dims, max_op, input, output_size)
        flag(return_indices, "return_indices")  # the gradient is the values' either way
        shape = (*plan.input.shape[:2], *plan.out_size)
        grad = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        _, indices = _max(plan)
        return (plan.finish(plan.scatter(indices, grad)),)

    functions = (
        adaptive_avg_pool,
        adaptive_avg_pool_backward,
        adaptive_max_pool,
        adaptive_max_pool_backward,
    )
    names = (avg_op, f"{avg_op}_backward", max_op, f"{max_op}_backward")
    for function, name in zip(functions, names, strict=True):
        function.__name__ = function.__qualname__ = name
    return functions


(
    adaptive_avg_pool1d,
    adaptive_avg_pool1d_backward,
    adaptive_max_pool1d,
    adaptive_max_pool1d_backward,
) = _make(1)
(
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
) = _make(2)
(
    adaptive_avg_pool3d,
    adaptive_avg_pool3d_backward,
    adaptive_max_pool3d,
    adaptive_max_pool3d_backward,
) = _make(3)
