"""Max, average and power-average (Lp) pooling over 1-3 spatial dimensions, and their gradients.

A window of output q covers input positions q*stride - padding + k*dilation, k < kernel_size,
of which those inside the input are *valid*; the rest lie in the padding or, with ceil_mode,
past it. Output sizes follow :func:`reference.shapes.pool_output_size`.

max:  the first maximum of the valid elements in window order (row-major), except that a NaN
      wins and the last NaN wins among several (torch's `val > max || isnan(val)` scan from
      the first valid element); returns it and its flat index within the input's spatial
      dimensions. The gradient goes to that element; overlapping windows add up. A window
      with no valid element (dilation can skip over a short input) gives -inf and index -1.
avg:  the sum of the valid elements over a divisor: divisor_override if given; else, with
      count_include_pad, the window clipped to the padded input (never the ceil-mode
      overhang past the right padding); else the number of valid elements.
lp:   (sum of x**p over the valid elements) ** (1/p), torch's documented f(X). Its gradient
      x**(p-1) * S**(1/p - 1) per window; where S = 0 the root is not differentiable for
      p > 1 and the gradient is taken as 0 (a subgradient when the window is all zeros).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference._arguments import (
    IntOrTuple,
    PlanCache,
    as_float_array,
    batched,
    describe,
    flag,
    is_int,
    non_negative,
    ntuple,
    plan_key,
    positive,
    real,
)
from reference._windows import constant_pad, crop, scatter_windows, windows
from reference.conv import check_grad_output, check_spatial
from reference.shapes import pool_output_size


@dataclass(frozen=True)
class PoolPlan:
    input: np.ndarray  # batched
    unbatched: bool
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.input.shape[2:])

    @property
    def geometry(self) -> Geometry:
        """What the plan's grids and window offsets depend on (their caches' key)."""
        return (self.spatial, self.out_size, self.kernel, self.stride, self.padding, self.dilation)

    def widths(self) -> list[tuple[int, int]]:
        """Zeros before (the padding) and after (what the last window needs) each axis."""
        widths = [(0, 0), (0, 0)]
        for size, k, s, p, d, o in zip(
            self.spatial,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.out_size,
            strict=True,
        ):
            needed = (o - 1) * s + d * (k - 1) + 1
            widths.append((p, max(0, needed - p - size)))
        return widths

    def padded(self, x: np.ndarray, value: float = 0.0) -> np.ndarray:
        """x with the widths' padding of ``value``; x itself (no copy) when there is none."""
        widths = self.widths()
        if not any(before or after for before, after in widths):
            return x
        return constant_pad(x, [(0, 0)] * (x.ndim - len(widths)) + widths, value)

    def taps(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(N, C, *out_size, prod(kernel)): every window's elements in window order, ``fill``
        in the padding."""
        view = windows(self.padded(x, fill), self.kernel, self.stride, self.dilation, self.out_size)
        return view.reshape(*view.shape[: 2 + len(self.kernel)], math.prod(self.kernel))

    def grids(self) -> tuple[np.ndarray, np.ndarray]:
        """(valid, flat index) per output position and tap, each (*out_size, prod(kernel)),
        read-only: the geometry's own, computed once (every example's oracle and bound ask)."""
        return _pool_grids(self.geometry)

    def window_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, offset): the flat index of each window's first tap, (*out_size), and each
        tap's offset from it, (prod(kernel),), read-only. A flat index is linear in the
        position, so start + offset is the grids' flat index without their (*out_size,
        prod(kernel)) arrays."""
        return _window_offsets(self.geometry)

    def scatter(self, per_tap: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`taps`: add (N, C, *out_size, prod(kernel)) back onto the input."""
        dims = len(self.kernel)
        shaped = per_tap.reshape(*per_tap.shape[: 2 + dims], *self.kernel)
        padded_size = [
            size + before + after
            for size, (before, after) in zip(self.spatial, self.widths()[2:], strict=True)
        ]
        grad = scatter_windows(shaped, padded_size, self.stride, self.dilation)
        return crop(grad, self.padding, self.spatial)

    def finish(self, out: np.ndarray) -> np.ndarray:
        return out[0] if self.unbatched else out


# (spatial size, out_size, kernel, stride, padding, dilation): what a plan's grids depend on
Geometry = tuple[tuple[int, ...], ...]


@functools.lru_cache(maxsize=512)
def _pool_grids(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    spatial, out_size, kernel, stride, padding, dilation = geometry
    dims = len(kernel)
    valid = np.ones((), dtype=bool)
    flat = np.zeros((), dtype=np.int64)
    for axis in range(dims):
        o, k = out_size[axis], kernel[axis]
        starts = np.arange(o)[:, None] * stride[axis] - padding[axis]
        position = starts + np.arange(k)[None, :] * dilation[axis]
        shape = [1] * (2 * dims)
        shape[axis], shape[dims + axis] = o, k
        position = position.reshape(shape)
        valid = valid & (position >= 0) & (position < spatial[axis])
        flat = flat + position * math.prod(spatial[axis + 1 :])
    full = (*out_size, math.prod(kernel))
    grids = tuple(
        np.array(np.broadcast_to(grid, (*out_size, *kernel))).reshape(full)
        for grid in (valid, flat)
    )
    for grid in grids:
        grid.flags.writeable = False
    return grids[0], grids[1]


@functools.lru_cache(maxsize=512)
def _window_offsets(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    spatial, out_size, kernel, stride, padding, dilation = geometry
    dims = len(kernel)
    start: np.ndarray = np.zeros((), dtype=np.int64)
    offset: np.ndarray = np.zeros((), dtype=np.int64)
    for axis in range(dims):
        step = math.prod(spatial[axis + 1 :])  # the axis's stride in a flat index
        shape = [1] * dims
        shape[axis] = out_size[axis]
        begins = (np.arange(out_size[axis]) * stride[axis] - padding[axis]) * step
        start = start + begins.reshape(shape)
        shape[axis] = kernel[axis]
        offset = offset + (np.arange(kernel[axis]) * (dilation[axis] * step)).reshape(shape)
    start = np.array(np.broadcast_to(start, out_size))
    offset = offset.reshape(-1)
    for array in (start, offset):
        array.flags.writeable = False
    return start, offset


def plan_pool(
    dims: int,
    op: str,
    input: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    broadcast: bool = True,
) -> PoolPlan:
    """Validate a pooling call. With ``broadcast`` a one-element kernel_size, stride, padding
    or dilation is repeated over the spatial dimensions, as torch's max and average pooling
    do (its lp pooling unpacks kernel_size into dims values and does not)."""
    key = plan_key(
        (input,), (dims, op, kernel_size, stride, padding, dilation, ceil_mode, broadcast)
    )
    known = _PLANS.lend(key, input)
    if known is not None:  # the same shape, dtype and knobs passed every check below
        x, unbatched, remembered = known
        return PoolPlan(x, unbatched, *remembered)
    input = as_float_array(input, "input")
    x, unbatched = batched(input, dims, op)
    check_spatial(x)
    kernel, strides, pads, dilations, ceil = pool_knobs(
        dims, kernel_size, stride, padding, dilation, ceil_mode, broadcast
    )
    out = pool_output_size(tuple(x.shape[2:]), kernel, strides, pads, dilations, ceil)
    assert isinstance(out, tuple)
    _PLANS.put(key, (unbatched, kernel, strides, pads, dilations, out))
    return PoolPlan(x, unbatched, kernel, strides, pads, dilations, out)


_PLANS = PlanCache()


PoolKnobs = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], bool]


def pool_knobs(
    dims: int,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    broadcast: bool = True,
    prefix: str = "",
) -> PoolKnobs:
    """(kernel, stride, padding, dilation, ceil_mode) checked, each spatial knob ``dims``
    values: positive (padding non-negative and at most half the kernel), stride None or
    empty meaning the kernel size (torch). Errors name the arguments with ``prefix``
    (conv_max_pool's pool_kernel_size, ...)."""

    def name(knob: str) -> str:
        return prefix + knob

    kernel = positive(
        ntuple(kernel_size, name("kernel_size"), dims, broadcast), name("kernel_size")
    )
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        strides = kernel  # torch: stride None or empty means kernel_size
    else:
        strides = positive(ntuple(stride, name("stride"), dims, broadcast), name("stride"))
    pads = non_negative(ntuple(padding, name("padding"), dims, broadcast), name("padding"))
    if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
        raise ValueError(
            f"{name('padding')} must be at most half of {name('kernel_size')}, got {pads} for "
            f"{kernel}"
        )
    dilations = positive(ntuple(dilation, name("dilation"), dims, broadcast), name("dilation"))
    return kernel, strides, pads, dilations, flag(ceil_mode, "ceil_mode")


def first_max_index(taps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index along the last axis of torch's max: last NaN, else first maximum of valid taps."""
    nan = np.isnan(taps) & valid
    last_nan = taps.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    candidates = np.where(valid & ~nan, taps, -np.inf)
    best = candidates.max(axis=-1, keepdims=True)
    first_best = np.argmax((candidates == best) & valid, axis=-1)
    return np.where(nan.any(axis=-1), last_nan, first_best)


# Up to this many output values (batch x channels x positions), the max is one argmax over
# the windows' taps copied side by side; past it, one branch-free pass per tap over the strided
# views. The passes cost a few ufunc calls per tap, most of the time on the campaign's small
# arrays (its max_pool2d and max_pool3d examples: 83-93 us a call against 183-209); the copy
# and an argmax over a short last axis cost more per value (4 x 8 channels at 16x16, 2x2
# windows: 1.4x the passes' time; 64 channels at 112x112, 3x3: 1.8x). Both find the same
# maximum, the first among ties, and the same index.
STACKED_MAX_OUTPUTS = 2048


def _max_forward(plan: PoolPlan) -> tuple[np.ndarray, np.ndarray]:
    """Values and flat indices of every window's maximum.

    torch scans a window with `val > max || isnan(val)` from its first element inside the
    input. Here the padding is -inf, which no element inside the input loses to, and a
    strictly greater tap takes over, so ties keep the first maximum (-0.0 before 0.0 stays
    -0.0). A window holding NaN then takes its last NaN; one whose maximum is -inf takes its
    first element inside the input, or index -1 if it has none (dilation can skip a short
    input), whose value is -inf, the maximum of nothing.
    """
    view = windows(
        plan.padded(plan.input, -np.inf), plan.kernel, plan.stride, plan.dilation, plan.out_size
    )
    dims = len(plan.kernel)
    if math.prod(view.shape[: 2 + dims]) <= STACKED_MAX_OUTPUTS:
        best, tap = _max_stacked(view, dims)
    else:
        best, tap = _max_passes(view, plan.kernel)
    count = math.prod(plan.kernel)
    if np.isnan(plan.input).any():
        for position, values in enumerate(_tap_views(view, plan.kernel)):
            nan = np.isnan(values)
            np.copyto(tap, position, where=nan)
            np.copyto(best, values, where=nan)
    start, offset = plan.window_offsets()
    index = start + offset[tap]
    floor = best == -np.inf
    if floor.any():
        valid, flat = plan.grids()
        flat = flat.reshape(-1, count)
        inside = valid.reshape(-1, count)
        first = np.take_along_axis(flat, np.argmax(inside, axis=1)[:, np.newaxis], axis=1)
        first_inside = np.where(inside.any(axis=1), first[:, 0], -1).reshape(plan.out_size)
        index = np.where(floor, first_inside, index)
    return best, index


def _tap_views(view: np.ndarray, kernel: tuple[int, ...]) -> list[np.ndarray]:
    """Each tap's values over every window (views), in window order."""
    return [view[(Ellipsis, *tap)] for tap in np.ndindex(*kernel)]


def _max_stacked(view: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(maximum, its tap) by one argmax over the taps copied side by side: argmax takes the
    first of tied values, -0.0 before 0.0 too (NaN: _max_forward's)."""
    count = math.prod(view.shape[2 + dims :])
    stacked = view.reshape(*view.shape[: 2 + dims], count)
    tap = np.argmax(stacked, axis=-1)
    rows = stacked.reshape(-1, count)
    best = rows[np.arange(rows.shape[0]), tap.reshape(-1)].reshape(tap.shape)
    return best, tap


def _max_passes(view: np.ndarray, kernel: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(maximum, its tap) by one pass per tap over its strided view."""
    taps = _tap_views(view, kernel)
    # branch-free passes: a masked copy over random data runs 5x slower than arithmetic
    best = taps[0].copy()
    tap = np.zeros(best.shape, dtype=np.min_scalar_type(len(taps)))
    for position, values in enumerate(taps[1:], start=1):
        better = values > best  # false against a NaN: a NaN found stays
        np.maximum(tap, better * tap.dtype.type(position), out=tap)  # taps only increase
        np.maximum(best, values, out=best)
    zero = best == 0
    if zero.any():  # np.maximum's zero among tied zeros is not the first one's sign
        for position, values in enumerate(taps):
            np.copyto(best, values, where=zero & (tap == position))
    return best, tap


def _max_backward(grad: np.ndarray, plan: PoolPlan) -> np.ndarray:
    _, indices = _max_forward(plan)
    batch, channels = plan.input.shape[:2]
    size = math.prod(plan.spatial)
    planes = np.arange(batch * channels).reshape(batch, channels, *([1] * len(plan.kernel)))
    found = indices >= 0  # an empty window passes its gradient to nothing
    target = (planes * size + np.where(found, indices, 0)).ravel()
    weights = np.where(found, grad, 0).ravel()
    total = np.bincount(target, weights=weights, minlength=batch * channels * size)
    return total.reshape(plan.input.shape).astype(plan.input.dtype)


def _avg_divisor(
    plan: PoolPlan, count_include_pad: bool, divisor_override: int | None
) -> np.ndarray:
    """Divisor per output position, (*out_size)."""
    if divisor_override is not None:
        return np.full(plan.out_size, float(divisor_override))
    divisor = np.ones(())
    for axis, (o, k, s, p, size) in enumerate(
        zip(plan.out_size, plan.kernel, plan.stride, plan.padding, plan.spatial, strict=True)
    ):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        count = end - start if count_include_pad else np.minimum(end, size) - np.maximum(start, 0)
        shape = [1] * len(plan.kernel)
        shape[axis] = o
        divisor = divisor * count.reshape(shape)
    return divisor


def _check_divisor(divisor_override: object) -> int | None:
    if divisor_override is None:
        return None
    if not is_int(divisor_override):
        raise TypeError(
            f"divisor_override must be an int or None, got {describe(divisor_override)}"
        )
    if divisor_override == 0:
        raise ValueError("divisor_override must not be zero")
    return int(divisor_override)


def _check_norm_type(norm_type: object) -> float:
    p = real(norm_type, "norm_type")
    if not (0 < p < math.inf):
        raise ValueError(f"norm_type must be positive and finite, got {norm_type}")
    return p


def _window_sums(plan: PoolPlan, x: np.ndarray) -> np.ndarray:
    """Sum of each window, one strided view per kernel tap added in window order (no copy
    of the windows)."""
    view = windows(plan.padded(x), plan.kernel, plan.stride, plan.dilation, plan.out_size)
    taps = iter(np.ndindex(*plan.kernel))
    total = view[(Ellipsis, *next(taps))].copy()
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, as IEEE says
        for tap in taps:
            total += view[(Ellipsis, *tap)]
    return total


def _lp_coefficients(grad: np.ndarray, sums: np.ndarray, norm_type: float) -> np.ndarray:
    """g * S**(1/p - 1) per window; 0 where S = 0 and p > 1 (the root's kink)."""
    if norm_type == 1.0:
        return grad
    nonzero = sums != 0
    safe = np.where(nonzero, sums, 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(nonzero, grad * np.power(safe, 1.0 / norm_type - 1.0), 0.0)


Pool = Callable[..., Any]


def _make_max(dims: int) -> tuple[Pool, Pool]:
    op = f"max_pool{dims}d"

    def max_pool(
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        plan = plan_pool(dims, op, input, kernel_size, stride, padding, dilation, ceil_mode)
        with_indices = flag(return_indices, "return_indices")
        values, indices = _max_forward(plan)
        if with_indices:
            return plan.finish(values), plan.finish(indices)
        return plan.finish(values)

    def max_pool_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> tuple[np.ndarray]:
        plan = plan_pool(dims, op, input, kernel_size, stride, padding, dilation, ceil_mode)
        flag(return_indices, "return_indices")  # the gradient is the values' either way
        shape = (*plan.input.shape[:2], *plan.out_size)
        grad = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        return (plan.finish(_max_backward(grad, plan)),)

    return _named(max_pool, op), _named(max_pool_backward, f"{op}_backward")


def max_pool_output_shape(
    dims: int,
    input: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[int, ...]:
    """The shape of max_pool{dims}d's values (and indices) for these arguments, checked as it
    checks them, without computing them."""
    op = f"max_pool{dims}d"
    plan = plan_pool(dims, op, input, kernel_size, stride, padding, dilation, ceil_mode)
    flag(return_indices, "return_indices")
    return (*plan.input.shape[int(plan.unbatched) : 2], *plan.out_size)


def _make_avg(dims: int) -> tuple[Pool, Pool]:
    op = f"avg_pool{dims}d"

    def forward(
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None,
        padding: IntOrTuple,
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: int | None,
    ) -> np.ndarray:
        plan = plan_pool(dims, op, input, kernel_size, stride, padding, 1, ceil_mode)
        include_pad = flag(count_include_pad, "count_include_pad")
        divisor = _avg_divisor(plan, include_pad, _check_divisor(divisor_override))
        return plan.finish((_window_sums(plan, plan.input) / divisor).astype(plan.input.dtype))

    def backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None,
        padding: IntOrTuple,
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: int | None,
    ) -> tuple[np.ndarray]:
        plan = plan_pool(dims, op, input, kernel_size, stride, padding, 1, ceil_mode)
        include_pad = flag(count_include_pad, "count_include_pad")
        divisor = _avg_divisor(plan, include_pad, _check_divisor(divisor_override))
        shape = (*plan.input.shape[:2], *plan.out_size)
        grad = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        per_window = (grad / divisor).astype(plan.input.dtype)
        taps = np.broadcast_to(per_window[..., np.newaxis], (*shape, math.prod(plan.kernel)))
        return (plan.finish(plan.scatter(taps)),)

    if dims == 1:  # torch's avg_pool1d has no divisor_override

        def avg_pool(
            input: np.ndarray,
            kernel_size: IntOrTuple,
            stride: IntOrTuple | None = None,
            padding: IntOrTuple = 0,
            ceil_mode: bool = False,
            count_include_pad: bool = True,
        ) -> np.ndarray:
            return forward(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)

        def avg_pool_backward(
            grad_output: np.ndarray,
            input: np.ndarray,
            kernel_size: IntOrTuple,
            stride: IntOrTuple | None = None,
            padding: IntOrTuple = 0,
            ceil_mode: bool = False,
            count_include_pad: bool = True,
        ) -> tuple[np.ndarray]:
            return backward(
                grad_output,
                input,
                kernel_size,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
                None,
            )

        return _named(avg_pool, op), _named(avg_pool_backward, f"{op}_backward")

    def avg_pool_nd(
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> np.ndarray:
        return forward(
            input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        )

    def avg_pool_nd_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> tuple[np.ndarray]:
        return backward(
            grad_output,
            input,
            kernel_size,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
            divisor_override,
        )

    return _named(avg_pool_nd, op), _named(avg_pool_nd_backward, f"{op}_backward")


def _make_lp(dims: int) -> tuple[Pool, Pool]:
    op = f"lp_pool{dims}d"

    def lp_pool(
        input: np.ndarray,
        norm_type: float,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        ceil_mode: bool = False,
    ) -> np.ndarray:
        p = _check_norm_type(norm_type)
        plan = plan_pool(dims, op, input, kernel_size, stride, 0, 1, ceil_mode, False)
        with np.errstate(invalid="ignore"):
            sums = _window_sums(plan, np.power(plan.input, p))
            return plan.finish(np.power(sums, 1.0 / p))

    def lp_pool_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        norm_type: float,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        ceil_mode: bool = False,
    ) -> tuple[np.ndarray]:
        p = _check_norm_type(norm_type)
        plan = plan_pool(dims, op, input, kernel_size, stride, 0, 1, ceil_mode, False)
        shape = (*plan.input.shape[:2], *plan.out_size)
        grad = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            sums = _window_sums(plan, np.power(plan.input, p))
            coefficients = _lp_coefficients(grad, sums, p)
            grad_input = _spread(plan, coefficients) * np.power(plan.input, p - 1.0)
        return (plan.finish(grad_input.astype(plan.input.dtype)),)

    return _named(lp_pool, op), _named(lp_pool_backward, f"{op}_backward")


def _spread(plan: PoolPlan, per_window: np.ndarray) -> np.ndarray:
    """Each input element's sum of a (batched) per-window value over the windows holding it."""
    taps = (*per_window.shape, math.prod(plan.kernel))
    return plan.scatter(np.broadcast_to(per_window[..., np.newaxis], taps))


def lp_window_spread(
    dims: int,
    per_window: np.ndarray,
    input: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Each element of ``input``'s sum of ``per_window`` (a value per window of lp pooling's
    geometry over ``input``: its output's shape) over the windows that hold it: lp pooling's
    backward at norm_type 1 (the same values, bit for bit), without its window sums."""
    op = f"lp_pool{dims}d"
    plan = plan_pool(dims, op, input, kernel_size, stride, 0, 1, ceil_mode, False)
    shape = (*plan.input.shape[:2], *plan.out_size)
    values = check_grad_output(per_window, shape, plan.unbatched, plan.input.dtype, "per_window")
    return plan.finish(_spread(plan, values))


def _named(function: Pool, name: str) -> Pool:
    function.__name__ = function.__qualname__ = name
    return function


max_pool1d, max_pool1d_backward = _make_max(1)
max_pool2d, max_pool2d_backward = _make_max(2)
max_pool3d, max_pool3d_backward = _make_max(3)
avg_pool1d, avg_pool1d_backward = _make_avg(1)
avg_pool2d, avg_pool2d_backward = _make_avg(2)
avg_pool3d, avg_pool3d_backward = _make_avg(3)
lp_pool1d, lp_pool1d_backward = _make_lp(1)
lp_pool2d, lp_pool2d_backward = _make_lp(2)
lp_pool3d, lp_pool3d_backward = _make_lp(3)
