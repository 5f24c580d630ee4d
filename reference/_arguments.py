"""Argument normalization and validation shared by every reference op.

Every public op validates before it computes, and every error names the argument and the rule
it broke, so a caller never sees a NumPy traceback from deep inside a kernel.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

IntOrTuple = int | Sequence[int]


def as_float_array(value: object, name: str) -> np.ndarray:
    """Return ``value`` as a C-contiguous floating ndarray (a copy only when it is not one
    already: then sums run in one order whatever the caller's layout, so a Fortran-order or
    negatively strided array gives the bitwise-same answer), or raise TypeError naming
    ``name``."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    return np.ascontiguousarray(value)


def check_ndim(array: np.ndarray, name: str, allowed: Sequence[int], meaning: str) -> None:
    if array.ndim not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise ValueError(
            f"{name} must be {expected}-dimensional ({meaning}), got shape {array.shape}"
        )


def ntuple(value: IntOrTuple, name: str, dims: int) -> tuple[int, ...]:
    """Expand an int to ``dims`` copies, or check a sequence has ``dims`` ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got a bool")
    if isinstance(value, numbers.Integral):
        return (int(value),) * dims
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) != dims:
            raise ValueError(f"{name} must have {dims} elements, got {len(items)}: {value!r}")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(f"{name} must hold ints, got {value!r}")
        return tuple(int(item) for item in items)
    raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")


def positive(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def non_negative(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {values}")
    return values


def positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def batched(input: np.ndarray, spatial_dims: int, op: str) -> tuple[np.ndarray, bool]:
    """Return ``input`` with a batch axis, and whether one was added (unbatched input)."""
    check_ndim(
        input,
        "input",
        (spatial_dims + 1, spatial_dims + 2),
        f"{op} takes (C, *spatial) unbatched or (N, C, *spatial) batched",
    )
    if input.ndim == spatial_dims + 1:
        return input[np.newaxis], True
    return input, False


def check_bias(bias: np.ndarray | None, channels: int) -> np.ndarray | None:
    if bias is None:
        return None
    bias = as_float_array(bias, "bias")
    if bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {bias.shape}")
    return bias
