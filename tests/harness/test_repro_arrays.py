"""A repro's arrays read back bit for bit: small ones as literals a reader can read, large
ones (a model's activations, a history's earlier calls) as their bytes in hex."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from conformance.judge.repro import LITERAL_LIMIT, array_code


def awkward(size: int) -> np.ndarray:
    """Values across float64's range with NaN, both infinities, -0.0 and subnormals."""
    rng = np.random.default_rng(size)
    values = rng.standard_normal(size) * 10.0 ** rng.integers(-310, 308, size)
    values[::7], values[::11], values[::13], values[::17] = np.nan, np.inf, -np.inf, -0.0
    return values


@pytest.mark.parametrize("size", [5, LITERAL_LIMIT, LITERAL_LIMIT + 1, 3 * LITERAL_LIMIT])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16", "int64", "bool"])
def test_an_array_reads_back_bit_for_bit(size: int, dtype: str) -> None:
    values = awkward(size)
    if dtype == "int64":
        array = np.random.default_rng(0).integers(-(2**62), 2**62, size)
    elif dtype == "bool":
        array = values > 0
    else:
        stored = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
        with np.errstate(over="ignore"):  # past float16's range: inf, as the dtype stores it
            array = values.astype(stored)
    array = array.reshape(2, -1) if size % 2 == 0 else array
    code = array_code(array, dtype)
    back = eval(code, {"np": np})  # what the repro script runs
    # bfloat16 comes back as float32 (NumPy has none; the call lines convert), exactly
    want = array.astype(np.float32) if dtype == "bfloat16" else array
    assert back.dtype == want.dtype and back.shape == want.shape
    assert back.tobytes() == want.tobytes()  # NaN positions and signs of zero included
    assert back.flags.writeable  # an op that updates its input in place may get it
    assert code.startswith("np.array([") == (size <= LITERAL_LIMIT)


def test_a_large_array_is_its_bytes_in_hex() -> None:
    """A ResNet layer's activation at 224x224 (64 x 112 x 112): 16 characters a value (its
    float64 bytes in hex), where a literal took about 20 and seconds per array to write."""
    array = np.random.default_rng(1).standard_normal((1, 64, 112, 112)).astype(np.float32)
    code = array_code(array, "float32")
    assert len(code) < 2.1 * array.size * 8 + 200
