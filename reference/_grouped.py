"""Large grouped and depthwise convolutions: im2col in cache-sized blocks, on a thread pool.

The engine of :mod:`reference._windows` builds one im2col matrix for the whole batch; for a
grouped conv each group's slice of it is thin and out of cache, and every copy and product
runs on one core. Here the work is cut into blocks of (image, a few groups) whose buffers fit
in a core's L2 cache, and the blocks are shared among a few threads (NumPy's copies and
OpenBLAS release the GIL).

The columns are "wide": a padded input plane flattened, the output position q (row-major over
the spatial axes) is laid at sum_a q_a * Q_a, the flat stride of axis a in the (phase) plane,
so that each tap's column row is one contiguous run of the plane, x[offset_k : offset_k +
span], and its copy is a memcpy. Positions q_a >= out_size[a] on the inner axes are garbage
that the forward pass crops. A strided conv first splits each plane into stride-phase planes
(x[..., p::s]), in which every tap is again a shift.

Every output element is computed by one block and one thread, with the same products and
sums, whatever the number of threads: results are bitwise the same on 1 or 16 threads.
grad_weight's sum over the batch is a separate (N, ...) array reduced in batch order.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference._arguments import describe, is_int


def _default_threads() -> int:
    text = os.environ.get("REFERENCE_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"REFERENCE_THREADS must be a positive integer, got {text!r}")
        return int(text)
    return 1


# The tuning of the engine (the tests set min_macs to 0 to send tiny convs through it):
# - threads: the most threads one convolution uses (reference.set_threads; the environment
#   variable REFERENCE_THREADS sets the default). One by default: on the 2-core bench
#   machine, shared with other work, two threads measured no faster and often slower
#   (depthwise 64 @56 forward 14.8 ms on one, 30.3 on two; g=32 256 @28 15.6 against 32.1;
#   g=8 128 @28 13.7 and 13.6), and a campaign's pytest-xdist workers already fill the cores.
#   On an idle machine two threads now do better at real sizes (bench, batch 8, planes 56
#   and 112 wide: g=32 forward 114 -> 63 ms, g=8 83 -> 55, depthwise backward 128 -> 110),
#   so the bench gives the reference as many threads as torch has;
# - min_macs: convolutions with fewer multiply-adds keep _windows' paths (a campaign's
#   examples are far below: they pay no block loop, and their bits are what they were);
# - thread_min_macs: below it one thread does all blocks (a pool's hand-off costs ~50 us);
# - block_bytes: a block's column buffer, about a core's L2;
# - gemm_macs: the largest product handed to BLAS at once. OpenBLAS runs a product of at
#   most 4 * 65536 multiply-adds on the calling thread; a larger one wakes its own threads,
#   which then fight ours for the cores (a 16x144x838 product: 4.8 GMAC/s against 21);
# - gemv_elements: the largest matrix-vector product (or dot) handed to BLAS at once, where
#   OpenBLAS's gemv starts its threads.
GROUPED = {
    "threads": _default_threads(),
    "min_macs": 1 << 20,
    "thread_min_macs": 1 << 22,
    "block_bytes": 1 << 20,
    "gemm_macs": 1 << 18,
    "gemv_elements": 2304 * 4,
    "panel_bytes": 1 << 20,
}


def set_threads(count: int) -> int:
    """Set the most threads one large grouped or depthwise convolution may use (the default
    is 1, or the REFERENCE_THREADS environment variable). Results do not depend on it, bit
    for bit. Returns the count it replaces."""
    if not is_int(count):
        raise TypeError(f"count (the reference's threads) must be an int, got {describe(count)}")
    if count < 1:
        raise ValueError(f"count (the reference's threads) must be at least 1, got {count}")
    before = GROUPED["threads"]
    GROUPED["threads"] = int(count)
    return before


_POOL: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's helper threads, created on first use and kept (grown when asked for
    more)."""
    with _POOL_LOCK:
        pool = _POOL.get(0)
        if pool is None or pool._max_workers < workers:
            if pool is not None:
                pool.shutdown(wait=False)
            pool = _POOL[0] = ThreadPoolExecutor(workers, thread_name_prefix="reference")
        return pool


Block = tuple[int, int, int]  # (image, first group, end group)
Pads = Sequence[tuple[int, int]]  # (before, after) zeros per spatial axis


def _run(
    blocks: list[Block], work: Callable[[Callable[[], Block | None]], None], macs: int
) -> None:
    """work(take) on the caller's thread and up to threads - 1 of the pool's, each calling
    take() for its next block until it answers None. Blocks go to whichever thread is free
    (a core shared with another process slows one thread, not the whole call); which thread
    computes a block never changes its result."""
    threads = min(GROUPED["threads"], len(blocks))
    lock = threading.Lock()
    queue = iter(blocks)

    def take() -> Block | None:
        with lock:
            return next(queue, None)

    if threads <= 1 or macs < GROUPED["thread_min_macs"]:
        work(take)
        return
    futures: list[Future[None]] = [
        _pool(threads - 1).submit(work, take) for _ in range(threads - 1)
    ]
    try:
        work(take)
    finally:
        for future in futures:
            future.result()


def use(x: np.ndarray, weight: np.ndarray, groups: int, macs: int) -> bool:
    """Whether this engine runs a conv: grouped, large, and in a dtype BLAS multiplies."""
    return (
        groups > 1
        and macs >= GROUPED["min_macs"]
        and x.dtype == weight.dtype
        and x.dtype in (np.float32, np.float64)
    )


@dataclass(frozen=True)
class Geometry:
    """Where each tap's columns lie in the (phase-split) flattened padded planes."""

    padded_size: tuple[int, ...]
    out_size: tuple[int, ...]
    stride: tuple[int, ...]
    phase_size: tuple[int, ...]  # Q: a stride-phase plane's size, ceil(padded / stride)
    taps: tuple[tuple[int, int], ...]  # per tap (weight order): phase, flat offset
    span: int  # wide columns from the first output to the last
    wide: int  # out_size[0] rows of the phase plane: the wide buffer's length
    # at stride 1, the taps' offsets as a lattice: (kernel_size, flat step per kernel axis)
    lattice: tuple[tuple[int, ...], tuple[int, ...]] | None

    @property
    def phases(self) -> int:
        return math.prod(self.stride)

    @property
    def plane(self) -> int:
        return math.prod(self.phase_size)

    def crop(self, wide: np.ndarray) -> np.ndarray:
        """The valid outputs (..., *out_size) of wide buffers (..., wide)."""
        rows = wide.reshape(*wide.shape[:-1], self.out_size[0], *self.phase_size[1:])
        return rows[_at(*(slice(0, o) for o in self.out_size[1:]))]


def geometry(
    padded_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_size: Sequence[int],
) -> Geometry:
    fits = zip(padded_size, kernel_size, stride, dilation, out_size, strict=True)
    # every tap's run lies inside its plane (the column views read no further)
    assert all(o <= 0 or (p - d * (k - 1) - 1) // s + 1 >= o for p, k, s, d, o in fits)
    phase_size = tuple(-(-p // s) for p, s in zip(padded_size, stride, strict=True))
    flat = [math.prod(phase_size[a + 1 :]) for a in range(len(phase_size))]
    taps = []
    for tap in np.ndindex(*kernel_size):
        shifts = [k * d for k, d in zip(tap, dilation, strict=True)]
        phase = [t % s for t, s in zip(shifts, stride, strict=True)]
        offset = sum(t // s * f for t, s, f in zip(shifts, stride, flat, strict=True))
        taps.append((int(np.ravel_multi_index(phase, stride)) if phase else 0, offset))
    span = sum((o - 1) * f for o, f in zip(out_size, flat, strict=True)) + 1
    lattice = None
    if all(s == 1 for s in stride):
        steps = tuple(d * f for d, f in zip(dilation, flat, strict=True))
        lattice = (tuple(kernel_size), steps)
    return Geometry(
        tuple(padded_size), tuple(out_size), tuple(stride), phase_size, tuple(taps), span,
        out_size[0] * flat[0], lattice,
    )  # fmt: skip


def _at(*parts: Any) -> tuple[Any, ...]:
    """An index over the trailing axes: (..., *parts)."""
    return (Ellipsis, *parts)


def _phases_of(phase: tuple[int, ...], stride: tuple[int, ...]) -> tuple[Any, ...]:
    return _at(*(slice(p, None, s) for p, s in zip(phase, stride, strict=True)))


def _phase_split(block: np.ndarray, geo: Geometry) -> np.ndarray:
    """block (C, *padded) as (C, phases, Q): the planes themselves at stride 1 (a view of a
    contiguous block), else each phase block[..., p::s] copied into a zero-filled plane."""
    if geo.phases == 1:
        return block.reshape(block.shape[0], 1, geo.plane)
    out = np.zeros((block.shape[0], *geo.stride, *geo.phase_size), dtype=block.dtype)
    for phase in np.ndindex(*geo.stride):
        part = block[_phases_of(phase, geo.stride)]
        out[_at(*phase, *(slice(0, n) for n in part.shape[1:]))] = part
    return out.reshape(block.shape[0], geo.phases, geo.plane)


def _phase_join(planes: np.ndarray, geo: Geometry, out: np.ndarray) -> None:
    """The inverse of :func:`_phase_split`: planes (C, phases, Q) into out (C, *padded), every
    element of which lies in one phase."""
    split = planes.reshape(planes.shape[0], *geo.stride, *geo.phase_size)
    for phase in np.ndindex(*geo.stride):
        target = out[_phases_of(phase, geo.stride)]
        target[...] = split[_at(*phase, *(slice(0, n) for n in target.shape[1:]))]


def _interior(pads: Pads, size: Sequence[int]) -> tuple[Any, ...]:
    """The unpadded input's place in a padded plane."""
    return _at(*(slice(before, before + n) for (before, _), n in zip(pads, size, strict=True)))


class _Planes:
    """A block's input planes, (channels, phases, Q): x[n, c0:c1] itself when x comes padded;
    with ``pads`` (x unpadded, zero padding) x[n, c0:c1] copied into the interior of a
    scratch buffer whose zero border is never written. The whole padded input is never
    made: its copy costs as much as a depthwise conv's products."""

    def __init__(self, x: np.ndarray, pads: Pads | None, geo: Geometry, channels: int) -> None:
        self.x, self.geo = x, geo
        self.scratch = None
        if pads is not None:
            self.scratch = np.zeros((channels, *geo.padded_size), dtype=x.dtype)
            self.inside = _interior(pads, x.shape[2:])

    def __call__(self, n: int, c0: int, c1: int) -> np.ndarray:
        block = self.x[n, c0:c1]
        if self.scratch is not None:
            padded = self.scratch[: c1 - c0]
            padded[self.inside] = block
            block = padded
        return _phase_split(block, self.geo)


class _GradPlanes:
    """Where a block's grad_input is summed, (channels, phases, Q), from +0: grad_x's own
    padded planes at stride 1 without pads, else a scratch buffer that :meth:`commit` joins
    from its phases and, with ``pads`` (grad_x unpadded), crops to the input's size."""

    def __init__(self, grad_x: np.ndarray, pads: Pads | None, geo: Geometry, channels: int) -> None:
        self.grad_x, self.pads, self.geo = grad_x, pads, geo
        dtype = grad_x.dtype
        self.scratch = self.padded = None
        if pads is not None or geo.phases > 1:
            self.scratch = np.empty((channels, geo.phases, geo.plane), dtype=dtype)
        if pads is not None:
            self.inside = _interior(pads, grad_x.shape[2:])
            if geo.phases > 1:
                self.padded = np.empty((channels, *geo.padded_size), dtype=dtype)

    def planes(self, n: int, c0: int, c1: int) -> np.ndarray:
        if self.scratch is None:  # grad_x is zeros
            return self.grad_x[n, c0:c1].reshape(c1 - c0, 1, self.geo.plane)
        planes = self.scratch[: c1 - c0]
        planes.fill(0)
        return planes

    def commit(self, n: int, c0: int, c1: int, planes: np.ndarray) -> None:
        if self.scratch is None:
            return
        target = self.grad_x[n, c0:c1]
        if self.pads is None:
            _phase_join(planes, self.geo, target)
            return
        if self.padded is None:
            padded = planes.reshape(c1 - c0, *self.geo.padded_size)
        else:
            padded = self.padded[: c1 - c0]
            _phase_join(planes, self.geo, padded)
        target[...] = padded[self.inside]


class _Columns:
    """A block's im2col columns, (count, Cg * taps, columns), a panel of several products'
    columns at a time (about panel_bytes, a whole number of products): filled at once (one
    strided copy at stride 1, one per tap otherwise), then read by its products while still
    in cache. Column t of tap k is column offset_k + t of the tap's phase plane."""

    def __init__(self, size: int, depth: int, step: int, dtype: np.dtype) -> None:
        steps = GROUPED["panel_bytes"] // max(size * depth * step * dtype.itemsize, 1)
        self.panel = step * max(1, steps)
        self.buffer = np.empty(size * depth * self.panel, dtype=dtype)

    def panels(self, planes: np.ndarray, geo: Geometry) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, end, the columns start to end) of planes (count, Cg, phases, Q)."""
        count, in_per_group = planes.shape[:2]
        view = None
        if geo.lattice is not None:
            shape = (count, in_per_group, *geo.lattice[0], geo.span)
            strides = (
                *planes.strides[:2],
                *(planes.itemsize * f for f in geo.lattice[1]),
                planes.itemsize,
            )
            view = np.lib.stride_tricks.as_strided(planes, shape, strides, writeable=False)
        for start in range(0, geo.span, self.panel):
            end = min(geo.span, start + self.panel)
            columns = _buffer(self.buffer, (count, in_per_group, len(geo.taps), end - start))
            if view is not None:
                columns.reshape(*view.shape[:-1], end - start)[...] = view[..., start:end]
            else:
                for k, (phase, offset) in enumerate(geo.taps):
                    columns[:, :, k] = planes[:, :, phase, offset + start : offset + end]
            yield start, end, columns.reshape(count, -1, end - start)


def _buffer(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A contiguous array of this shape at the start of a flat scratch buffer."""
    return flat[: math.prod(shape)].reshape(shape)


def _blocks(batch: int, groups: int, per_group_bytes: int) -> tuple[list[Block], int]:
    size = max(1, min(groups, GROUPED["block_bytes"] // max(per_group_bytes, 1)))
    blocks = [(n, g, min(groups, g + size)) for n in range(batch) for g in range(0, groups, size)]
    return blocks, size


def _chunk(rows: int, depth: int) -> int:
    """Columns per product of a (rows, depth) matrix: at most gemm_macs multiply-adds, and
    for a matrix-vector product (one row) at most gemv_elements matrix elements."""
    limit = (
        GROUPED["gemm_macs"] if rows > 1 else min(GROUPED["gemm_macs"], GROUPED["gemv_elements"])
    )
    return max(1, limit // max(rows * depth, 1))


# One input channel per group (depthwise, with any channel multiplier): the gradients are
# summed tap by tap, a broadcast product of a weight and the tap's run of a plane, without
# columns. The forward keeps its columns, filled a panel at a time: a 1 x taps product per
# group reads them once, where tap by tap reads and writes the sum once per tap. Measured
# (float64, 64 channels, batch 8, planes 28, 56 and 112 wide): forward 4.0, 11.9, 42.9 ms by
# columns against 9.7, 12.5, 52.9 tap by tap; grad_input 10.7, 33.0, 125 against 8.7, 17.2,
# 68.3; grad_weight 3.2, 12.4, 52.1 against 2.4, 9.8, 41.5. (At stride 1 grad_input comes
# here no more: _windows gathers it as a correlation, faster still.)


def _taps_backward_input(
    grads: np.ndarray, weights: np.ndarray, geo: Geometry, planes: np.ndarray, term: np.ndarray
) -> None:
    """planes (G, phases, Q) += weights[g, o, k] * grads[g, o] (G, Co, span) on each tap's
    run, tap by tap and output by output."""
    for k, (phase, offset) in enumerate(geo.taps):
        run = planes[:, phase, offset : offset + geo.span]
        for o in range(grads.shape[1]):
            np.multiply(grads[:, o], weights[:, o, k, np.newaxis], out=term)
            run += term


def _taps_backward_weight(
    grads: np.ndarray, planes: np.ndarray, geo: Geometry, terms: np.ndarray, partial: np.ndarray
) -> None:
    """terms (G, Co, taps): per tap the dot of grads[g, o] (G, Co, span) with the tap's run of
    plane g, in runs short enough for one thread's gemv."""
    step = max(1, GROUPED["gemv_elements"] // grads.shape[1])
    for k, (phase, offset) in enumerate(geo.taps):
        run = planes[:, phase, offset : offset + geo.span, np.newaxis]
        target = terms[:, :, k : k + 1]
        for t in range(0, geo.span, step):
            end = min(geo.span, t + step)
            if t == 0:
                np.matmul(grads[:, :, t:end], run[:, t:end], out=target)
            else:
                np.matmul(grads[:, :, t:end], run[:, t:end], out=partial)
                target += partial


def unpadded_size(padded_size: Sequence[int], pads: Pads) -> tuple[int, ...]:
    return tuple(n - a - b for n, (a, b) in zip(padded_size, pads, strict=True))


def correlate(
    x: np.ndarray, weight: np.ndarray, groups: int, geo: Geometry, pads: Pads | None = None
) -> np.ndarray:
    """:func:`reference._windows.correlate` for a large grouped conv; ``pads``: x is unpadded
    and zero-padded by them, block by block."""
    batch = x.shape[0]
    out_channels, in_per_group = weight.shape[:2]
    per_group, taps = out_channels // groups, len(geo.taps)
    depth = in_per_group * taps
    matrix = weight.reshape(groups, per_group, depth)
    out = np.empty((batch, out_channels, *geo.out_size), dtype=x.dtype)
    step = _chunk(per_group, depth)
    per_block = in_per_group * geo.phases * geo.plane + per_group * geo.wide
    blocks, size = _blocks(batch, groups, per_block * x.itemsize)

    def work(take: Callable[[], Block | None]) -> None:
        source = _Planes(x, pads, geo, size * in_per_group)
        product = np.empty((size, per_group, geo.wide), dtype=x.dtype)
        columns = _Columns(size, depth, step, x.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN, as IEEE says
            while (block := take()) is not None:
                n, g0, g1 = block
                count = g1 - g0
                planes = source(n, g0 * in_per_group, g1 * in_per_group)
                prod = product[:count]
                planes = planes.reshape(count, in_per_group, *planes.shape[1:])
                for start, stop, cols in columns.panels(planes, geo):
                    for t in range(start, stop, step):
                        end = min(stop, t + step)
                        part = cols[:, :, t - start : end - start]
                        np.matmul(matrix[g0:g1], part, out=prod[:, :, t:end])
                out[n, g0 * per_group : g1 * per_group] = geo.crop(
                    prod.reshape(count * per_group, geo.wide)
                )

    _run(blocks, work, batch * out_channels * depth * math.prod(geo.out_size))
    return out


def correlate_backward_input(
    grad_output: np.ndarray, weight: np.ndarray, groups: int, geo: Geometry,
    pads: Pads | None = None,
) -> np.ndarray:  # fmt: skip
    """:func:`reference._windows.correlate_backward_input` for a large grouped conv with a
    finite weight: per block W^T @ grad added tap by tap onto the planes (as columns, or
    straight from the grad with one input channel per group). With ``pads`` (zero padding)
    the gradient of the unpadded input.

    The garbage columns of the wide grad are zeros, whose products (+-0 with a finite
    weight) leave every sum as it was, started from +0 as it is."""
    batch, out_channels = grad_output.shape[:2]
    in_per_group = weight.shape[1]
    per_group, taps = out_channels // groups, len(geo.taps)
    depth = in_per_group * taps
    matrix = weight.reshape(groups, per_group, depth)  # depth = taps with one channel a group
    transposed = matrix.transpose(0, 2, 1)
    dtype = grad_output.dtype
    channels = groups * in_per_group
    if pads is None:
        grad_x = np.zeros((batch, channels, *geo.padded_size), dtype=dtype)
    else:  # every element written by its block
        grad_x = np.empty((batch, channels, *unpadded_size(geo.padded_size, pads)), dtype=dtype)
    by_taps = in_per_group == 1
    per_block = (
        per_group * geo.wide + 2 * geo.phases * geo.plane + geo.span
        if by_taps
        else depth * geo.wide
    )
    blocks, size = _blocks(batch, groups, per_block * dtype.itemsize)
    step = _chunk(per_group, depth)

    def work(take: Callable[[], Block | None]) -> None:
        grad_wide = np.zeros((size, per_group, geo.wide), dtype=dtype)
        sink = _GradPlanes(grad_x, pads, geo, size * in_per_group)
        if by_taps:
            term = np.empty((size, geo.span), dtype=dtype)
        else:
            columns = np.empty((size, in_per_group, taps, geo.wide), dtype=dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            while (block := take()) is not None:
                n, g0, g1 = block
                count = g1 - g0
                c0, c1 = g0 * in_per_group, g1 * in_per_group
                wide = grad_wide[:count]
                rows = grad_output[n, g0 * per_group : g1 * per_group]
                geo.crop(wide)[...] = rows.reshape(count, per_group, *geo.out_size)
                planes = sink.planes(n, c0, c1)
                if by_taps:
                    grads = wide[..., : geo.span]
                    _taps_backward_input(grads, matrix[g0:g1], geo, planes, term[:count])
                    sink.commit(n, c0, c1, planes)
                    continue
                cols = columns[:count].reshape(count, depth, geo.wide)
                for t in range(0, geo.span, step):
                    end = min(geo.span, t + step)
                    if per_group == 1:  # an outer product: matmul's K = 1 loop is 6x slower
                        np.multiply(transposed[g0:g1], wide[:, :, t:end], out=cols[:, :, t:end])
                    else:
                        np.matmul(transposed[g0:g1], wide[:, :, t:end], out=cols[:, :, t:end])
                split = planes.reshape(count, in_per_group, geo.phases, geo.plane)
                taps_columns = columns[:count]
                for k, (phase, offset) in enumerate(geo.taps):
                    split[:, :, phase, offset : offset + geo.span] += taps_columns[
                        :, :, k, : geo.span
                    ]
                sink.commit(n, c0, c1, planes)

    _run(blocks, work, batch * out_channels * depth * math.prod(geo.out_size))
    return grad_x


def correlate_backward_weight(
    x: np.ndarray, grad_output: np.ndarray, groups: int, geo: Geometry,
    pads: Pads | None = None,
) -> np.ndarray | None:  # fmt: skip
    """:func:`reference._windows.correlate_backward_weight` for a large grouped conv: per
    image and group grad (Co, wide) @ columns^T (or, with one input channel per group, one
    dot per tap), the images' terms then added in batch order. ``pads``: x is unpadded and
    zero-padded by them.

    None where the result has a NaN: the garbage columns' zero grads multiply real inputs,
    and an inf there makes a NaN the true sum lacks; the caller recomputes those cases."""
    batch, channels = x.shape[:2]
    out_channels = grad_output.shape[1]
    in_per_group, per_group, taps = channels // groups, out_channels // groups, len(geo.taps)
    depth = in_per_group * taps
    dtype = x.dtype
    terms = np.empty((batch, groups, per_group, depth), dtype=dtype)
    by_taps = in_per_group == 1
    per_block = per_group * geo.wide + in_per_group * geo.phases * geo.plane
    blocks, size = _blocks(batch, groups, per_block * dtype.itemsize)
    step = _chunk(min(per_group, depth), max(per_group, depth))

    def work(take: Callable[[], Block | None]) -> None:
        grad_wide = np.zeros((size, per_group, geo.wide), dtype=dtype)
        source = _Planes(x, pads, geo, size * in_per_group)
        if not by_taps:
            columns = _Columns(size, depth, step, dtype)
        partial = np.empty((size, per_group, 1 if by_taps else depth), dtype=dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            while (block := take()) is not None:
                n, g0, g1 = block
                count = g1 - g0
                wide = grad_wide[:count]
                rows = grad_output[n, g0 * per_group : g1 * per_group]
                geo.crop(wide)[...] = rows.reshape(count, per_group, *geo.out_size)
                planes = source(n, g0 * in_per_group, g1 * in_per_group)
                target = terms[n, g0:g1]
                if by_taps:
                    grads = wide[..., : geo.span]
                    _taps_backward_weight(grads, planes, geo, target, partial[:count])
                    continue
                planes = planes.reshape(count, in_per_group, *planes.shape[1:])
                for start, stop, cols in columns.panels(planes, geo):
                    for t in range(start, stop, step):
                        end = min(stop, t + step)
                        part = cols[:, :, t - start : end - start].transpose(0, 2, 1)
                        if t == 0:
                            np.matmul(wide[:, :, t:end], part, out=target)
                        else:
                            np.matmul(wide[:, :, t:end], part, out=partial[:count])
                            target += partial[:count]

    _run(blocks, work, batch * out_channels * depth * math.prod(geo.out_size))
    with np.errstate(invalid="ignore", over="ignore"):
        grad_weight = terms.sum(axis=0)
    if np.isnan(grad_weight).any():
        return None
    return grad_weight.reshape(out_channels, in_per_group, taps)  # the caller's kernel shape
