"""torch.nn.functional's pooling written with jax.lax.reduce_window and jnp.

Each function takes a jax array and torch's keyword arguments and is traced by ``jax.jit``
with the arguments fixed (static). This module imports only numpy, jax and the conv of
jax_lax_conv (which imports only those two; the fusion chain conv_max_pool calls it), so that
a repro snippet can carry a function's source verbatim.

Window geometry (torch's pooling_output_shape): along an axis of size L with kernel k,
stride s, padding p and dilation d the output has o = floor_or_ceil((L + 2p - d(k-1) - 1)/s)
+ 1 windows, less one under ceil_mode when the last would start in the right padding
((o-1)s >= L + p). reduce_window gets padding (p, p + extra), extra the overhang the last
ceil-mode window needs past the right padding, and the result is cut to o windows.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from conformance.implementations.jax_lax_conv import conv


def per_dim(value: Any, dims: int) -> tuple[int, ...]:
    """An int or a tuple as one entry per spatial dimension (torch's _ntuple)."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value),) * dims


def pool_geometry(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    ceil_mode: bool,
) -> tuple[list[int], list[tuple[int, int]]]:
    """(output size, reduce_window's (before, after) padding) per spatial dim, torch's rule."""
    sizes, pads = [], []
    for length, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        room = length + 2 * p - span
        out = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (out - 1) * s >= length + p:
            out -= 1  # torch drops a last window that starts in the right padding
        extra = max(0, (out - 1) * s + span - (length + 2 * p))
        sizes.append(out)
        pads.append((p, p + extra))
    return sizes, pads


def windowed(
    x: jax.Array,
    init: float,
    reducer: Any,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    ceil_mode: bool,
) -> jax.Array:
    """lax.reduce_window over the spatial dims of a batched x, cut to torch's window count."""
    sizes, pads = pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    return reduce_windows(x, init, reducer, kernel, stride, pads, dilation, sizes)


def reduce_windows(
    x: jax.Array,
    init: float,
    reducer: Any,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: list[tuple[int, int]],
    dilation: tuple[int, ...],
    sizes: list[int],
) -> jax.Array:
    """lax.reduce_window with explicit padding, its result cut to ``sizes`` windows."""
    out = lax.reduce_window(
        x,
        np.array(init, x.dtype),  # a constant: lax then picks its differentiable max/add
        reducer,
        window_dimensions=(1, 1, *kernel),
        window_strides=(1, 1, *stride),
        padding=((0, 0), (0, 0), *pads),
        window_dilation=(1, 1, *dilation),
    )
    return out[(Ellipsis, *(slice(0, size) for size in sizes))]


def max_pool(
    input: jax.Array,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    dims: int,
) -> jax.Array:
    """F.max_pool{dims}d's values: reduce_window(lax.max) from -inf (the maximum of an
    empty window is -inf, torch's value). jax has no pooling with indices."""
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    kernel = per_dim(kernel_size, dims)
    strides = kernel if stride is None else per_dim(stride, dims)
    out = windowed(
        x,
        -np.inf,
        lax.max,
        kernel,
        strides,
        per_dim(padding, dims),
        per_dim(dilation, dims),
        ceil_mode,
    )
    return out[0] if unbatched else out


def avg_divisor(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    ceil_mode: bool,
    count_include_pad: bool,
) -> jax.Array:
    """Divisor per window, counted as Flax's avg_pool counts: reduce_window of ones.

    count_include_pad: the window clipped to the padded input (ones padded with ones, the
    ceil-mode overhang past the right padding not counted); else the elements inside."""
    unit = (1,) * len(spatial)
    sizes, pads = pool_geometry(spatial, kernel, stride, padding, unit, ceil_mode)
    ones = jnp.ones((1, 1, *spatial))
    if count_include_pad:
        ones = jnp.pad(ones, [(0, 0), (0, 0), *((p, p) for p in padding)], constant_values=1.0)
        pads = [(0, after - before) for before, after in pads]
    return reduce_windows(ones, 0.0, lax.add, kernel, stride, pads, unit, sizes)[0, 0]


def avg_pool(
    input: jax.Array,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    dims: int,
) -> jax.Array:
    """F.avg_pool{dims}d: reduce_window(lax.add) of x over the divisor (Flax's composition:
    the window sum is rounded to the input dtype, then divided)."""
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    kernel = per_dim(kernel_size, dims)
    strides = kernel if stride is None else per_dim(stride, dims)
    pads = per_dim(padding, dims)
    sums = windowed(x, 0.0, lax.add, kernel, strides, pads, (1,) * dims, ceil_mode)
    if divisor_override is not None:
        out = sums / jnp.array(divisor_override, x.dtype)
    else:
        divisor = avg_divisor(x.shape[2:], kernel, strides, pads, ceil_mode, count_include_pad)
        out = sums / divisor.astype(x.dtype)
    return out[0] if unbatched else out


def lp_pool(
    input: jax.Array,
    norm_type: float,
    kernel_size: Any,
    stride: Any = None,
    ceil_mode: bool = False,
    *,
    dims: int,
) -> jax.Array:
    """F.lp_pool{dims}d by torch's documented f(X) = (sum over the window of x**p)**(1/p).

    The sum is reduce_window(lax.add) of x**p over the window's elements (a ceil-mode window
    past the input sums what it holds). The root is taken where S != 0 and S = 0 maps to 0
    (jnp.where on both sides, JAX's idiom for a function with a kink): its gradient there
    is 0, the reference's subgradient; at p = 1 no root is taken (the sum is linear)."""
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    kernel = per_dim(kernel_size, dims)
    strides = kernel if stride is None else per_dim(stride, dims)
    unit = (1,) * dims
    # torch's x.pow(p) has a constant exponent: for an integral p that is lax.integer_pow,
    # not lax.pow, whose float exponent jax differentiates as a variable, so that d/dx of
    # x ** 0.0 (the second derivative at p = 1) is 0 * x ** -1.0, NaN at x = 0
    exponent = int(norm_type) if float(norm_type).is_integer() else norm_type
    powered = x**exponent
    sums = windowed(powered, 0.0, lax.add, kernel, strides, (0,) * dims, unit, ceil_mode)
    if norm_type == 1.0:
        out = sums
    else:
        nonzero = sums != 0
        safe = jnp.where(nonzero, sums, jnp.ones_like(sums))
        out = jnp.where(nonzero, safe ** (1.0 / norm_type), jnp.zeros_like(sums))
    return out[0] if unbatched else out


def adaptive_windows(x: jax.Array, out_sizes: tuple[int, ...], fill: float) -> tuple[Any, Any]:
    """(windows, counts): x's adaptive windows gathered as (N, C, *out, slots), slots in
    window (row-major) order with ``fill`` past a window's end, and each window's size.

    Output i of an axis with input size L and output size O pools [floor(iL/O),
    ceil((i+1)L/O)) (torch's start_index / end_index)."""
    dims = len(out_sizes)
    mask = np.ones((), dtype=bool)
    for axis, (length, out) in enumerate(zip(x.shape[2:], out_sizes, strict=True)):
        index = np.arange(out)
        start = index * length // out
        end = -(-(index + 1) * length // out)
        width = int((end - start).max())
        position = start[:, None] + np.arange(width)[None, :]
        inside = position < end[:, None]
        at = 2 + 2 * axis  # axes before this one are already split into (out, width)
        gathered = jnp.take(x, np.minimum(position, length - 1).ravel(), axis=at)
        x = gathered.reshape(*x.shape[:at], out, width, *x.shape[at + 1 :])
        mask = mask[..., None, None] & inside.reshape((1,) * (2 * axis) + inside.shape)
    x = jnp.where(mask, x, jnp.array(fill, x.dtype))
    order = (0, 1, *range(2, 2 + 2 * dims, 2), *range(3, 3 + 2 * dims, 2))
    x = jnp.transpose(x, order)
    counts = np.transpose(mask, tuple(axis - 2 for axis in order[2:]))
    slots = x.shape[2 + dims :]
    windows = x.reshape(*x.shape[: 2 + dims], math.prod(slots))
    return windows, counts.reshape(*out_sizes, -1).sum(axis=-1)


def adaptive_out_sizes(input: jax.Array, output_size: Any, dims: int) -> tuple[int, ...]:
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    spatial = input.shape[-dims:]
    return tuple(n if o is None else int(o) for n, o in zip(spatial, sizes, strict=True))


def adaptive_avg_pool(input: jax.Array, output_size: Any, *, dims: int) -> jax.Array:
    """F.adaptive_avg_pool{dims}d: each window's jnp.sum over its size."""
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    out_sizes = adaptive_out_sizes(x, output_size, dims)
    if 0 in out_sizes:  # torch returns an empty array for an output size of 0
        return jnp.zeros((*input.shape[: input.ndim - dims], *out_sizes), input.dtype)
    windows, counts = adaptive_windows(x, out_sizes, 0.0)
    out = jnp.sum(windows, axis=-1) / jnp.asarray(counts, x.dtype)
    return out[0] if unbatched else out


def adaptive_max_pool(
    input: jax.Array, output_size: Any, return_indices: bool = False, *, dims: int
) -> jax.Array:
    """F.adaptive_max_pool{dims}d's values: each window's element chosen by torch's rule
    (the last NaN if any, else the first maximum), taken with take_along_axis so that the
    gradient goes to that element alone."""
    unbatched = input.ndim == dims + 1
    x = input[None] if unbatched else input
    out_sizes = adaptive_out_sizes(x, output_size, dims)
    if 0 in out_sizes:  # torch returns an empty array for an output size of 0
        return jnp.zeros((*input.shape[: input.ndim - dims], *out_sizes), input.dtype)
    windows, _ = adaptive_windows(x, out_sizes, -np.inf)
    nan = jnp.isnan(windows)
    slots = windows.shape[-1]
    last_nan = slots - 1 - jnp.argmax(nan[..., ::-1], axis=-1)
    first_max = jnp.argmax(jnp.where(nan, -jnp.inf, windows), axis=-1)
    chosen = jnp.where(nan.any(axis=-1), last_nan, first_max)
    out = jnp.take_along_axis(windows, chosen[..., None], axis=-1)[..., 0]
    return out[0] if unbatched else out


def conv_max_pool(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    pool_kernel_size: Any = 2,
    pool_stride: Any = None,
    pool_padding: Any = 0,
    pool_dilation: Any = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """The chain: conv (lax.conv_general_dilated), then max_pool of its output."""
    c = conv(input, weight, bias, stride, padding, dilation, groups)
    return max_pool(
        c, pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode, dims=2
    )
