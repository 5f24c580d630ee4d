"""The isolation's messages (conformance.implementations.wire): what arrives is what was sent,
bit for bit, with the dtype, shape, memory order and type NumPy's own pickling keeps."""

from __future__ import annotations

import pickle
from multiprocessing import Pipe

import ml_dtypes
import numpy as np
import pytest

from conformance.implementations import wire


def _bits_of_every_kind() -> list[np.ndarray]:
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 5e-324, 1.5])
    special[0] = np.frombuffer(np.uint64(0x7FF8_0000_DEAD_BEEF).tobytes(), np.float64)[0]
    read_only = np.arange(6.0).reshape(2, 3)
    read_only.flags.writeable = False
    return [
        special,
        special.astype(np.float32),
        special.astype(np.float16),
        special.astype(ml_dtypes.bfloat16),  # a user dtype: NumPy's own reduction
        np.arange(24.0).reshape(2, 3, 4),
        np.arange(24.0).reshape(2, 3, 4).transpose(2, 1, 0),  # Fortran order
        np.arange(10.0)[::3],  # a strided view
        np.zeros((0, 3)),
        np.array(2.5),
        np.arange(5, dtype=">f8"),  # the other byte order
        np.array([True, False]),
        np.arange(-3, 3, dtype=np.int8),
        np.arange(4, dtype=np.uint64),
        np.array([1 + 2j, -0.0j]),
        np.array(["2020-01-01"], dtype="M8[D]"),
        np.array([1, "a", None], dtype=object),
        np.ma.array([1.0, 2.0], mask=[False, True]),
        read_only,
    ]


@pytest.mark.parametrize("array", _bits_of_every_kind(), ids=lambda a: f"{a.dtype}{a.shape}")
def test_an_array_arrives_as_numpy_pickles_it(array: np.ndarray) -> None:
    got = pickle.loads(wire.dumps(("call", "op", (array, None), {"k": 1})))[2][0]
    expected = pickle.loads(pickle.dumps(array, protocol=4))
    assert type(got) is type(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.flags.c_contiguous == expected.flags.c_contiguous
    assert got.flags.f_contiguous == expected.flags.f_contiguous
    assert got.flags.writeable
    if array.dtype.hasobject:
        assert got.tolist() == array.tolist()
    else:
        # bit for bit (NaN payloads, -0.0), as the old way delivers them (which turns the
        # other byte order into the machine's, the same values)
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()
        assert got.tobytes() == array.tobytes() or array.dtype.byteorder == ">"
    if isinstance(array, np.ma.MaskedArray):
        assert np.array_equal(got.mask, array.mask)


def test_arrays_sent_are_copies_the_sender_can_change() -> None:
    array = np.arange(4.0)
    payload = wire.dumps(array)
    array[0] = 99.0
    assert pickle.loads(payload)[0] == 0.0
    got = pickle.loads(payload)
    got[1] = -1.0  # writable, and its own memory
    assert pickle.loads(payload)[1] == 1.0


def test_a_message_that_does_not_pickle_raises_before_anything_is_sent() -> None:
    mine, theirs = Pipe()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        wire.send(mine, ("ok", lambda: None, {}))
    assert not wire.Waiter(theirs).ready(0.05)
    wire.send(mine, ("ok", np.arange(3.0), {}))
    waiter = wire.Waiter(theirs)
    assert waiter.ready(1.0)
    reply = wire.receive(theirs)
    assert reply[0] == "ok" and reply[1].tolist() == [0.0, 1.0, 2.0]


def test_the_waiter_wakes_when_the_other_end_closes() -> None:
    mine, theirs = Pipe()
    waiter = wire.Waiter(theirs)
    assert not waiter.ready(0.05)
    mine.close()
    assert waiter.ready(1.0)
    with pytest.raises(EOFError):
        wire.receive(theirs)
