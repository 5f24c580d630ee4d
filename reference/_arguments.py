"""Argument normalization and validation shared by every reference op.

Every public op validates before it computes, and every error names the argument and the rule
it broke, so a caller never sees a NumPy traceback from deep inside a kernel.

What counts as an int: a Python int or a NumPy integer scalar (np.int64(3) is 3, as torch
takes it). Never a bool, though Python calls True an int: ``stride=True`` is a slip, not a
stride of 1, and torch refuses it too. Never a float, even 2.0 (torch refuses it). A tuple
argument is a list or a tuple (any sequence but a string or bytes) of such ints.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TypeGuard

import numpy as np

IntOrTuple = int | Sequence[int]

# sequences whose items are characters or bytes, never sizes: b"\x02\x02" is no (2, 2)
_TEXT = (str, bytes, bytearray, memoryview)


def describe(value: object) -> str:
    """``value`` for an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """An int or a NumPy integer scalar, and not a bool."""
    if type(value) is int:  # the common case, without the abstract-class checks
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_sequence(value: object) -> bool:
    """A list, tuple or other sequence that is not text."""
    if type(value) is tuple or type(value) is list:
        return True
    return isinstance(value, Sequence) and not isinstance(value, _TEXT)


def as_float_array(value: object, name: str) -> np.ndarray:
    """Return ``value`` as a C-contiguous floating ndarray (a copy only when it is not one
    already: then sums run in one order whatever the caller's layout, so a Fortran-order or
    negatively strided array gives the bitwise-same answer), or raise TypeError naming
    ``name``."""
    if type(value) is np.ndarray and value.dtype.kind == "f" and value.flags.c_contiguous:
        return value  # the usual case, answered first: every reference call asks, often twice
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must be a plain numpy.ndarray: a masked array's mask would be ignored"
        )
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    array = np.asarray(value)  # a subclass (np.matrix, whose * is a matrix product) as plain
    if array.flags.c_contiguous:  # a 0-d array is; np.ascontiguousarray would make it 1-d
        return array
    return np.ascontiguousarray(array)


def check_ndim(array: np.ndarray, name: str, allowed: Sequence[int], meaning: str) -> None:
    if array.ndim not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise ValueError(
            f"{name} must be {expected}-dimensional ({meaning}), got shape {array.shape}"
        )


def ntuple(value: object, name: str, dims: int, broadcast: bool = False) -> tuple[int, ...]:
    """Expand an int to ``dims`` copies, or check a sequence has ``dims`` ints.

    With ``broadcast``, a sequence of one int is repeated as an int is: torch's convolution
    and pooling ops take ``stride=(2,)`` for a 2-d op (ATen's expand_param_if_needed).
    """
    if type(value) is int:  # the common cases first: every reference op calls this often
        return (value,) * dims
    if type(value) is tuple and len(value) == dims and all(type(v) is int for v in value):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be an int or a tuple of {dims} ints, got a bool ({value!r}); a bool "
            "is not a size"
        )
    if is_int(value):
        return (int(value),) * dims
    if not is_sequence(value):
        raise TypeError(f"{name} must be an int or a tuple of {dims} ints, got {describe(value)}")
    assert isinstance(value, Sequence)
    items = tuple(value)
    for item in items:
        if not is_int(item):
            raise TypeError(f"{name} must hold ints, got {describe(item)} in {value!r}")
    if broadcast and len(items) == 1:
        return (int(items[0]),) * dims
    if len(items) != dims:
        one = " (or 1, repeated)" if broadcast and dims > 1 else ""
        raise ValueError(f"{name} must have {dims} elements{one}, got {len(items)}: {value!r}")
    return tuple(int(item) for item in items)


def positive(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def non_negative(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {values}")
    return values


def int_arg(value: object, name: str) -> int:
    """An int (or NumPy integer), not a bool or a float, as a Python int."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    return int(value)


def positive_int(value: object, name: str) -> int:
    number = int_arg(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


def flag(value: object, name: str) -> bool:
    """A bool (or NumPy bool): torch refuses 1 or "yes" for its bool arguments, and a
    truthy string would silently flip a mode."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return bool(value)


def real(value: object, name: str) -> float:
    """A real number (int, float or NumPy scalar), not a bool, as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    return float(value)


def shape_arg(value: object, name: str) -> tuple[int, ...]:
    """A shape: a sequence of non-negative ints, as a tuple of Python ints."""
    if not is_sequence(value):
        raise TypeError(f"{name} must be a tuple of ints, got {describe(value)}")
    assert isinstance(value, Sequence)
    for item in value:
        if not is_int(item):
            raise TypeError(f"{name} must hold ints, got {describe(item)} in {value!r}")
    shape = tuple(int(item) for item in value)
    if any(n < 0 for n in shape):
        raise ValueError(f"{name} must hold non-negative sizes, got {shape}")
    return shape


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


def check_bias(bias: object, channels: int, name: str = "bias") -> np.ndarray | None:
    if bias is None:
        return None
    array = as_float_array(bias, name)
    if array.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {array.shape}")
    return array


# --- checked plans, remembered ---------------------------------------------------------------

_UNKEYED = object()  # a value no key is made of


def _typed(value: object) -> object:
    """``value`` as a hashable key that tells apart what the checks tell apart (1, True and
    1.0 are equal in Python and different to a check: ints, strings and None stand for
    themselves, which no other key equals, bools and floats carry their type); _UNKEYED
    where it cannot be one."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is tuple:
        items: tuple = value  # type: ignore[assignment]
        if all(type(item) is int for item in items):
            return items
        typed = tuple(_typed(item) for item in items)
        return _UNKEYED if any(item is _UNKEYED for item in typed) else (tuple, typed)
    if kind is bool or kind is float:
        return (kind, value)
    return _UNKEYED  # lists, NumPy scalars, anything else: planned afresh each time


def plan_key(arrays: Sequence[object], knobs: Sequence[object]) -> tuple | None:
    """What a plan's checks read of a call: each array's shape and dtype (a plain C-contiguous
    float ndarray, which as_float_array returns as it is, or None) and each knob, typed; None
    where the call has something else (then it is planned afresh)."""
    parts: list[object] = []
    for array in arrays:
        if array is None:
            parts.append(None)
        elif type(array) is np.ndarray and array.dtype.kind == "f" and array.flags.c_contiguous:
            parts.append((array.shape, array.dtype))
        else:
            return None
    for knob in knobs:
        typed = _typed(knob)
        if typed is _UNKEYED:
            return None
        parts.append(typed)
    return tuple(parts)


class PlanCache:
    """The checked geometry of calls already planned, by plan_key: a call with the same
    arrays' shapes and dtypes and the same knobs passes the same checks and gets the same
    geometry, so only the first pays for them (tens of microseconds a plan; an example's
    oracle and bound plan the same call several times). Bounded: cleared when full."""

    def __init__(self, size: int = 1024) -> None:
        self._entries: dict[tuple, tuple] = {}
        self._size = size

    def get(self, key: tuple | None) -> tuple | None:
        return None if key is None else self._entries.get(key)

    def lend(self, key: tuple | None, input: object) -> tuple[np.ndarray, bool, list] | None:
        """For a remembered call (its geometry put as (unbatched, *rest)): ``input`` with the
        batch axis its plan adds, whether it was unbatched, and the rest; None otherwise."""
        known = self.get(key)
        if known is None:
            return None
        assert isinstance(input, np.ndarray)  # plan_key keys plain arrays only
        unbatched, *geometry = known
        return (input[np.newaxis] if unbatched else input), unbatched, geometry

    def put(self, key: tuple | None, geometry: tuple) -> None:
        if key is None:
            return
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = geometry
