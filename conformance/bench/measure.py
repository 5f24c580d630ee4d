"""How the benchmarks measure: a median of repeats after a settle and a warm-up, and glibc's
malloc asked to keep freed buffers (both benchmarks use them)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = Callable[[], Any]
# OpenBLAS's worker threads spin for a while after a NumPy product; a torch call that starts
# while they spin finds a core taken, and its OpenMP region waits a scheduler quantum (5-15x
# slower torch times, in bursts, when the two alternate without a pause). Each timing starts
# after this pause, so neither library runs against the other's idle threads.
SETTLE_SECONDS = 0.1


def keep_freed_memory() -> str:
    """Ask glibc's malloc to keep freed buffers of up to 32 MiB for reuse instead of returning
    them to the system; the answer goes in the header.

    By default it trims freed memory, so each call's fresh multi-megabyte buffers (im2col
    columns, outputs) fault their pages in again: that doubled the reference's ResNet-50 stem
    time (3.0 ms against 1.4) and measured the kernel's page-fault path rather than either
    library. It applies to the whole process, torch's allocations included.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return "system default (no glibc mallopt)"
    trim_threshold, mmap_threshold, limit = -1, -3, 32 * 2**20  # <malloc.h>; 32 MiB: its max
    if mallopt(mmap_threshold, limit) and mallopt(trim_threshold, 2 * limit):
        return "glibc, freed buffers up to 32 MiB kept for reuse"
    return "system default (mallopt refused)"


def median_seconds(run: Run, repeats: int) -> float:
    time.sleep(SETTLE_SECONDS)
    run()  # warm-up: first-call allocation and dispatch
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def publish(text: str, path: Path) -> None:
    """A benchmark's table: written whole (atomic_write: never half a file) and printed."""
    from conformance.reporting.report import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    print(text)
