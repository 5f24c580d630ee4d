"""torch.nn.functional's pooling written with TensorFlow's tf.nn pooling ops.

Same conventions as tensorflow_nn_conv: tensors in torch's layout in and out, channels-last
inside (TensorFlow's CPU pooling kernels take NWC / NHWC / NDHWC only), ``Inexpressible``
for a call TensorFlow has no exact spelling of. This module imports only numpy, tensorflow
and tensorflow_nn_conv, so that a repro snippet can carry a function's source verbatim.

Window geometry (torch's pooling_output_shape): along an axis of size L with kernel k,
stride s, padding p and dilation d there are o = floor_or_ceil((L + 2p - d(k-1) - 1)/s) + 1
windows, less one under ceil_mode when the last would start in the right padding
((o-1)s >= L + p). TensorFlow has no ceil mode: max pooling pads (p, p + extra) with -inf,
extra the overhang the last ceil-mode window needs, and pools 'VALID'. Average pooling
divides by the window's count, which TensorFlow fixes by its padding mode ('VALID': k, the
whole window; 'SAME': the elements inside the input): the adapter looks for a 'VALID' or
'SAME' call, on the input zero-padded by p or not along each axis, whose windows and
divisors are torch's, and declares the example Inexpressible where none is.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import tensorflow as tf

from conformance.implementations.tensorflow_nn_conv import (
    Inexpressible,
    channels_first,
    channels_last,
    pad_spatial,
    per_dim,
)


def pool_geometry(
    lengths: list[int],
    kernel: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
) -> tuple[list[int], list[tuple[int, int]]]:
    """(torch's output size, the (before, after) padding a 'VALID' pooling needs) per dim."""
    sizes, pads = [], []
    for length, k, s, p, d in zip(lengths, kernel, stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        room = length + 2 * p - span
        out = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (out - 1) * s >= length + p:
            out -= 1  # torch drops a last window that starts in the right padding
        extra = max(0, (out - 1) * s + span - (length + 2 * p))
        sizes.append(out)
        pads.append((p, p + extra))
    return sizes, pads


def max_pool(
    input: tf.Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    dims: int,
) -> Any:
    """F.max_pool{dims}d: tf.nn.max_pool on the input padded with -inf ('VALID'; 2-d:
    MaxPool's explicit padding). Dilation: tf.nn.pool, which dilates only at stride 1, so
    the stride-1 result is subsampled. return_indices: tf.nn.max_pool_with_argmax (2-d; 1-d
    as height 1), whose flat index y * W + x into the padded plane (per channel, batch not
    included) becomes torch's index into the unpadded plane."""
    unbatched = len(input.shape) == dims + 1
    x = channels_last(input[None] if unbatched else input)
    kernel = per_dim(kernel_size, dims)
    strides = kernel if stride is None else per_dim(stride, dims)
    dilations = per_dim(dilation, dims)
    lengths = list(x.shape[1:-1])
    sizes, pads = pool_geometry(
        lengths, kernel, strides, per_dim(padding, dims), dilations, ceil_mode
    )
    if return_indices:
        out, indices = _max_pool_indices(x, kernel, strides, pads, dilations, dims)
    elif max(dilations) > 1:
        padded = pad_spatial_value(x, pads, -np.inf)
        dense = tf.nn.pool(padded, kernel, "MAX", strides=[1] * dims, padding="VALID",
                           dilations=dilations)  # fmt: skip
        out = dense[(slice(None), *(slice(None, None, s) for s in strides))]
    elif dims == 2:
        explicit = [[0, 0], *([b, a] for b, a in pads), [0, 0]]
        out = tf.nn.max_pool2d(x, kernel, strides, explicit if any(map(any, pads)) else "VALID")
    else:
        padded = pad_spatial_value(x, pads, -np.inf)
        # the rank's own function: the rank-generic tf.nn.max_pool leaves a 5-d input's
        # data_format None, and its gradient then fails (reports/findings/tensorflow/
        # pool-v2-5d-gradient-data-format-none.md)
        out = getattr(tf.nn, f"max_pool{dims}d")(padded, kernel, strides, "VALID")
    out = channels_first(out[(slice(None), *(slice(0, n) for n in sizes))])
    if not return_indices:
        return out[0] if unbatched else out
    indices = channels_first(indices[(slice(None), *(slice(0, n) for n in sizes))])
    return (out[0], indices[0]) if unbatched else (out, indices)


def pad_spatial_value(x: tf.Tensor, pads: list[tuple[int, int]], value: float) -> tf.Tensor:
    """tf.pad of a channels-last x's spatial dims with a constant (-inf for max pooling)."""
    if not any(map(any, pads)):
        return x
    paddings = [[0, 0], *([b, a] for b, a in pads), [0, 0]]
    return tf.pad(x, paddings, constant_values=tf.constant(value, x.dtype))


def _max_pool_indices(
    x: tf.Tensor,
    kernel: list[int],
    strides: list[int],
    pads: list[tuple[int, int]],
    dilations: list[int],
    dims: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """tf.nn.max_pool_with_argmax's values and torch's indices (see max_pool)."""
    if dims == 3 or max(dilations) > 1:
        raise Inexpressible(
            "return_indices: tf.nn.max_pool_with_argmax is 2-d only and has no dilation"
        )
    padded = pad_spatial_value(x, pads, -np.inf)
    if dims == 1:  # (N, L, C) as (N, 1, L, C)
        padded, kernel, strides, pads = padded[:, None], [1, *kernel], [1, *strides],\
            [(0, 0), *pads]  # fmt: skip
    out, flat = tf.nn.max_pool_with_argmax(
        padded, kernel, strides, "VALID", include_batch_in_index=False
    )
    channels, padded_width = padded.shape[-1], padded.shape[2]
    width = padded_width - pads[1][0] - pads[1][1]
    position = flat // channels
    row = position // padded_width - pads[0][0]
    column = position % padded_width - pads[1][0]
    indices = row * width + column
    if dims == 1:
        return out[:, 0], indices[:, 0]
    return out, indices


def avg_divisors(
    length: int, kernel: int, stride: int, padding: int, ceil_mode: bool, include: bool
) -> np.ndarray:
    """torch's divisor per output window along one axis: the window clipped to the padded
    input (count_include_pad: the ceil-mode overhang past the right padding not counted),
    or to the input itself."""
    (size,), _ = pool_geometry([length], [kernel], [stride], [padding], [1], ceil_mode)
    start = np.arange(size) * stride - padding
    low, high = (-padding, length + padding) if include else (0, length)
    return np.minimum(start + kernel, high) - np.maximum(start, low)


def tf_avg_windows(
    length: int, kernel: int, stride: int, before: int, tf_padding: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """TensorFlow's windows along an axis already padded by ``before`` zeros on both sides:
    (their starts in the unpadded axis, their divisors); None where it has no window."""
    padded = length + 2 * before
    if tf_padding == "VALID":
        if padded < kernel:
            return None
        count = (padded - kernel) // stride + 1
        return np.arange(count) * stride - before, np.full(count, kernel)
    count = -(-padded // stride)
    total = max((count - 1) * stride + kernel - padded, 0)
    starts = np.arange(count) * stride - total // 2  # in the padded axis
    inside = np.minimum(starts + kernel, padded) - np.maximum(starts, 0)
    return starts - before, inside


def avg_plan(
    lengths: list[int],
    kernel: list[int],
    strides: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> tuple[str, list[int]]:
    """('VALID' or 'SAME', zero padding per axis) whose windows and divisors are torch's."""
    wanted = []
    for length, k, s, p in zip(lengths, kernel, strides, padding, strict=True):
        divisors = avg_divisors(length, k, s, p, ceil_mode, count_include_pad)
        starts = np.arange(divisors.size) * s - p
        wanted.append((starts, divisors))
    torch_divisor = _grid([d for _, d in wanted])
    if divisor_override is not None:
        torch_divisor = np.full_like(torch_divisor, divisor_override)
    for tf_padding in ("VALID", "SAME"):
        for pre in itertools.product(*({0, p} for p in padding)):
            windows = [
                tf_avg_windows(n, k, s, q, tf_padding)
                for n, k, s, q in zip(lengths, kernel, strides, pre, strict=True)
            ]
            if any(w is None for w in windows):
                continue
            if all(
                w is not None and np.array_equal(w[0], starts)
                for w, (starts, _) in zip(windows, wanted, strict=True)
            ) and np.array_equal(_grid([w[1] for w in windows if w is not None]), torch_divisor):
                return tf_padding, list(pre)
    raise Inexpressible(
        "avg_pool: no 'VALID' or 'SAME' tf.nn.avg_pool, on the input zero-padded or not, has "
        "torch's windows and divisors here (ceil_mode, count_include_pad=False with padding, "
        "or divisor_override: TensorFlow divides by the whole window or by its elements "
        "inside the input, nothing else)"
    )


def _grid(per_axis: list[np.ndarray]) -> np.ndarray:
    """The product divisor of every window, from each axis's divisors."""
    grid = np.ones(())
    for divisors in per_axis:
        grid = np.multiply.outer(grid, divisors)
    return grid


def avg_pool(
    input: tf.Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    dims: int,
) -> tf.Tensor:
    """F.avg_pool{dims}d: tf.nn.avg_pool with the padding avg_plan finds (see the module)."""
    unbatched = len(input.shape) == dims + 1
    x = channels_last(input[None] if unbatched else input)
    kernel = per_dim(kernel_size, dims)
    strides = kernel if stride is None else per_dim(stride, dims)
    padding_per_dim = per_dim(padding, dims)
    tf_padding, pre = avg_plan(
        list(x.shape[1:-1]),
        kernel,
        strides,
        padding_per_dim,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )
    if any(pre):
        x = pad_spatial(x, [(q, q) for q in pre])
    pool = getattr(tf.nn, f"avg_pool{dims}d")  # not tf.nn.avg_pool: see max_pool
    out = channels_first(pool(x, kernel, strides, tf_padding))
    return out[0] if unbatched else out


def adaptive_kernel(input: tf.Tensor, output_size: Any, dims: int) -> list[int]:
    """The kernel (= stride) of an adaptive pooling whose windows are all alike: output i of
    an axis pools [floor(iL/O), ceil((i+1)L/O)), which is [ik, (i+1)k) when O divides L."""
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    lengths = list(input.shape[-dims:])
    kernel = []
    for length, size in zip(lengths, sizes, strict=True):
        out = length if size is None else int(size)
        if out <= 0 or length % out:
            raise Inexpressible(
                "adaptive pooling with uneven windows (the output size does not divide the "
                "input size): tf.nn has no adaptive pooling, and a fixed-window pooling "
                "expresses only windows all of one size"
            )
        kernel.append(length // out)
    return kernel


def adaptive_avg_pool(input: tf.Tensor, output_size: Any, *, dims: int) -> tf.Tensor:
    """F.adaptive_avg_pool{dims}d where O divides L: tf.nn.avg_pool, kernel = stride = L/O."""
    kernel = adaptive_kernel(input, output_size, dims)
    return avg_pool(input, kernel, kernel, dims=dims)


def adaptive_max_pool(
    input: tf.Tensor, output_size: Any, return_indices: bool = False, *, dims: int
) -> Any:
    """F.adaptive_max_pool{dims}d where O divides L: max_pool with kernel = stride = L/O."""
    kernel = adaptive_kernel(input, output_size, dims)
    return max_pool(input, kernel, kernel, return_indices=return_indices, dims=dims)
