"""The messages between the caller and an isolation helper: pickled, with plain NumPy arrays
written as their raw bytes.

A call made in a helper crosses twice (the arguments there, the results back, arrays each
way: the model command's layers, an in-process run's quarantined calls); a campaign's batch of
examples crosses once, and each judged row comes back. multiprocessing's Connection.send
pickles with protocol 4, where an array goes through NumPy's generic reduction (its dtype
pickled as an object, its data copied into a bytes object and again into the stream), and
Connection.poll builds a selector for every wait. Here a C-contiguous array of a built-in dtype
is its dtype's string, its shape and a protocol-5 buffer of its memory (written once, read back
as a bytearray the array is made on, writable, without another copy); anything else (a
Fortran-ordered or strided view, bfloat16 and other user dtypes, an ndarray subclass, an object
array) pickles as before. Every array arrives as it did before: the same bits, dtype, shape,
memory order and type, writable.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import select
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

PROTOCOL = 5  # the first that writes a buffer (PickleBuffer) into the stream as it is


def _array(dtype: str, shape: tuple[int, ...], data: bytearray | bytes) -> np.ndarray:
    """The array of :func:`_reduce_array`, made on the bytearray unpickled (a bytes object,
    from a read-only array, is copied: every array arrives writable, as multiprocessing's
    pickling gives it)."""
    flat = np.frombuffer(data, dtype=np.dtype(dtype))
    if isinstance(data, bytes):
        flat = flat.copy()
    return flat.reshape(shape)


def _reduce_array(array: np.ndarray) -> Any:
    dtype = array.dtype
    if array.flags.c_contiguous and dtype.isbuiltin == 1 and dtype.kind in "biufc":
        return _array, (dtype.str, array.shape, pickle.PickleBuffer(array.data))
    # NumPy's own reduction, as multiprocessing pickles it (for bfloat16 no slower: its dtype
    # is pickled either way)
    return array.__reduce_ex__(4)


# looked up by the exact type (an ndarray subclass keeps its own reduction), then in copyreg's
# table as it stands when a message is pickled
_OWN: dict[type, Any] = {np.ndarray: _reduce_array}
_REDUCERS: collections.ChainMap[type, Any] = collections.ChainMap(_OWN, copyreg.dispatch_table)


def dumps(message: Any) -> memoryview:
    stream = io.BytesIO()
    pickler = pickle.Pickler(stream, protocol=PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(message)
    return stream.getbuffer()


def send(connection: Connection, message: Any) -> None:
    """Pickle ``message`` (raising what pickling raises, before anything is written), then
    send it."""
    connection.send_bytes(dumps(message))


def receive(connection: Connection) -> Any:
    return pickle.loads(connection.recv_bytes())


class Waiter:
    """Waits for a connection to become readable (or to close), with one poll object made
    once per connection rather than a selector per wait."""

    def __init__(self, connection: Connection) -> None:
        self._poll = select.poll()
        self._poll.register(connection.fileno(), select.POLLIN)

    def ready(self, seconds: float) -> bool:
        """Whether there is something to read (or the other end is gone) within ``seconds``."""
        return bool(self._poll.poll(max(0, int(seconds * 1000))))
