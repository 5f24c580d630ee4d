"""The floating dtypes a campaign tests, as NumPy dtypes, with their rounding constants.

NumPy has no bfloat16; ``ml_dtypes`` (the package JAX uses) gives it a real NumPy dtype, so an
implementation under test receives bfloat16 arrays, not float32 arrays that merely hold
bfloat16 values.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np

from conformance.catalogue.names import DTYPES

# float16 tops out at 65504: the "wide" kind's magnitudes (up to 1e3) would overflow inside
# every product and square, which tests float16's range, not the op. Scaled by 2^-8 (exact)
# they span 4e-6 to 4 - still six decades of cancellation, now with subnormal products.
FLOAT16_WIDE_SCALE = 2.0**-8


def input_scale(dtype: str, values: str) -> float:
    """What an example's arrays are multiplied by before they are rounded to ``dtype``."""
    return FLOAT16_WIDE_SCALE if (dtype, values) == ("float16", "wide") else 1.0


HALF_DTYPES = ("float16", "bfloat16")


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype called ``name`` (bfloat16 included)."""
    if name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(name)
    except TypeError:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}") from None


def dtype_name(dtype: np.dtype) -> str:
    return "bfloat16" if dtype == np.dtype(ml_dtypes.bfloat16) else str(dtype)


# largest and underflow_unit are asked for a few times in every op of every bound (14,000
# calls in 200 residual-block bounds): ml_dtypes.finfo builds its object anew each time
@functools.cache
def largest(name: str) -> float:
    """The largest finite value of the float dtype ``name``."""
    return float(ml_dtypes.finfo(numpy_dtype(name)).max)


@functools.cache
def underflow_unit(name: str) -> float:
    """eta: half the smallest subnormal, the absolute error of rounding below the normal range
    (Higham 2nd ed., eq. 2.8: fl(x op y) = (x op y)(1 + delta) + eta)."""
    if name == "tf32":  # an accumulation class with float32's exponent range
        name = "float32"
    return float(ml_dtypes.finfo(numpy_dtype(name)).smallest_subnormal) / 2
