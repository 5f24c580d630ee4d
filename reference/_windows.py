"""The im2col engine shared by convolution and transposed convolution.

A grouped cross-correlation of a padded input x (N, G*Cg, *P) with a weight (G*Co, Cg, *K) is
one batched matrix product per group: the column matrix (G, N*prod(O), Cg*prod(K)) of the
strided, dilated windows times the weight matrix (G, Cg*prod(K), Co). Its two adjoints, with
respect to the input (col2im of grad @ W) and to the weight (cols^T @ grad), give every
gradient of the family and the forward pass of transposed convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def windows(
    x_padded: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_size: Sequence[int],
) -> np.ndarray:
    """Strided view (N, C, *out_size, *kernel_size) of the windows; no copy."""
    dims = len(kernel_size)
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation, strict=True))
    view = sliding_window_view(x_padded, extent, axis=tuple(range(2, 2 + dims)))
    out_slices = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_size, stride, strict=True))
    tap_slices = tuple(slice(None, None, d) for d in dilation)
    return view[(slice(None), slice(None), *out_slices, *tap_slices)]


# The most one im2col buffer may take. A bigger call is refused before anything is
# allocated, with the figure, instead of swapping the machine to a halt; raise it with
# reference.set_im2col_budget(bytes).
IM2COL_BUDGET = {"bytes": 4 * 2**30}


def set_im2col_budget(limit: int) -> None:
    """Set the largest im2col buffer (bytes) a convolution may allocate."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError(f"the im2col budget must be a positive number of bytes, got {limit!r}")
    IM2COL_BUDGET["bytes"] = limit


def check_im2col_budget(rows: int, columns: int, groups: int, itemsize: int) -> None:
    size = rows * columns * groups * itemsize
    if size > IM2COL_BUDGET["bytes"]:
        raise ValueError(
            f"input and weight too large: the im2col buffer ({groups} x {rows} x {columns} "
            f"elements) would take {size / 2**30:.3g} GiB, over the budget of "
            f"{IM2COL_BUDGET['bytes'] / 2**30:.3g} GiB (reference.set_im2col_budget)"
        )


def _columns(
    x_padded: np.ndarray,
    groups: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_size: Sequence[int],
) -> np.ndarray:
    """The im2col buffer (G, N*prod(out_size), Cg*prod(kernel_size))."""
    batch, channels = x_padded.shape[:2]
    check_im2col_budget(
        batch * math.prod(out_size),
        channels // groups * math.prod(kernel_size),
        groups,
        x_padded.dtype.itemsize,
    )
    dims = len(kernel_size)
    view = windows(x_padded, kernel_size, stride, dilation, out_size)
    view = view.reshape(batch, groups, channels // groups, *view.shape[2:])
    order = (1, 0, *range(3, 3 + dims), 2, *range(3 + dims, 3 + 2 * dims))
    rows = batch * math.prod(out_size)
    return view.transpose(order).reshape(groups, rows, channels // groups * math.prod(kernel_size))


def _grad_matrix(grad_output: np.ndarray, groups: int) -> np.ndarray:
    """grad_output (N, G*Co, *O) as (G, N*prod(O), Co)."""
    batch, channels = grad_output.shape[:2]
    dims = grad_output.ndim - 2
    per_group = grad_output.reshape(batch, groups, channels // groups, *grad_output.shape[2:])
    order = (1, 0, *range(3, 3 + dims), 2)
    return per_group.transpose(order).reshape(groups, -1, channels // groups)


def _tap_slices(
    tap: Sequence[int], dilation: Sequence[int], out_size: Sequence[int], stride: Sequence[int]
) -> tuple[Any, ...]:
    """Index of the input positions q*stride + tap*dilation of every output q, one tap."""
    return (
        Ellipsis,
        *(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation, out_size, stride, strict=True)
        ),
    )


def per_tap(groups: int, in_per_group: int) -> bool:
    """Depthwise (one input channel per group): a loop of broadcast multiply-adds over the
    kernel taps beats a batched matmul whose inner dimension is the kernel size alone."""
    return groups > 1 and in_per_group == 1


def _correlate_taps(
    x_padded: np.ndarray,
    weight: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    out_size: Sequence[int],
) -> np.ndarray:
    """Depthwise correlate: y[n, g*m+o, q] = sum_k W[g*m+o, 0, k] * x[n, g, q*s + k*d]."""
    batch, dims = x_padded.shape[0], len(out_size)
    multiplier = weight.shape[0] // groups
    spread = (1, groups, multiplier, *([1] * dims))
    out = np.zeros((batch, groups, multiplier, *out_size), dtype=np.result_type(x_padded, weight))
    for tap in np.ndindex(*weight.shape[2:]):
        taps = x_padded[_tap_slices(tap, dilation, out_size, stride)][:, :, np.newaxis]
        out += taps * weight[(slice(None), 0, *tap)].reshape(spread)
    return out.reshape(batch, groups * multiplier, *out_size)


# Below this many output positions per image (7x7 and less), an NCHW-native product is a
# row of skinny GEMMs; folding the batch into the rows is then faster (bench: 2.6-4.8x on
# ResNet-50's 4x4 stage at batch 8).
NATIVE_MIN_POSITIONS = 64


def correlate(
    x_padded: np.ndarray,
    weight: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    out_size: Sequence[int],
) -> np.ndarray:
    """y[n, g*Co+o, q] = sum_{c, k} W[g*Co+o, c, k] * x[n, g*Cg+c, q*stride + k*dilation]."""
    if per_tap(groups, weight.shape[1]):
        return _correlate_taps(x_padded, weight, stride, dilation, groups, out_size)
    batch = x_padded.shape[0]
    out_channels, in_per_group = weight.shape[:2]
    kernel_size = weight.shape[2:]
    dims = len(kernel_size)
    depth, positions = in_per_group * math.prod(kernel_size), math.prod(out_size)
    if positions < NATIVE_MIN_POSITIONS:
        # few positions per image: one GEMM per group over the whole batch, (N*O, Cg*K) rows
        columns = _columns(x_padded, groups, kernel_size, stride, dilation, out_size)
        weight_rows = weight.reshape(groups, out_channels // groups, depth).transpose(0, 2, 1)
        product = np.matmul(columns, weight_rows)
        product = product.reshape(groups, batch, *out_size, out_channels // groups)
        order = (1, 0, 2 + dims, *range(2, 2 + dims))
        return np.ascontiguousarray(product.transpose(order)).reshape(
            batch, out_channels, *out_size
        )
    # NCHW-native: columns (N, G, Cg*K, O) so that W (G, Co, Cg*K) @ columns is already
    # (N, G, Co, O), the output's own layout: no transpose of the product
    check_im2col_budget(batch * positions, depth, groups, x_padded.dtype.itemsize)
    view = windows(x_padded, kernel_size, stride, dilation, out_size)
    view = view.reshape(batch, groups, in_per_group, *view.shape[2:])
    order = (0, 1, 2, *range(3 + dims, 3 + 2 * dims), *range(3, 3 + dims))
    columns = view.transpose(order).reshape(batch, groups, depth, positions)
    weight_matrix = weight.reshape(groups, out_channels // groups, depth)
    product = np.matmul(weight_matrix, columns)  # (N, G, Co, O)
    return product.reshape(batch, out_channels, *out_size)


def correlate_backward_input(
    grad_output: np.ndarray,
    weight: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    padded_size: Sequence[int],
) -> np.ndarray:
    """Adjoint of :func:`correlate` in x: col2im of grad @ W, onto (N, C, *padded_size)."""
    batch = grad_output.shape[0]
    out_size = grad_output.shape[2:]
    kernel_size = weight.shape[2:]
    dims = len(kernel_size)
    in_per_group = weight.shape[1]
    if per_tap(groups, in_per_group):
        multiplier = weight.shape[0] // groups
        per_group = grad_output.reshape(batch, groups, multiplier, *out_size)
        grad = np.zeros((batch, groups, *padded_size), dtype=grad_output.dtype)
        spread = (1, groups, multiplier, *([1] * dims))
        for tap in np.ndindex(*kernel_size):
            contribution = (per_group * weight[(slice(None), 0, *tap)].reshape(spread)).sum(2)
            with np.errstate(invalid="ignore", over="ignore"):
                grad[_tap_slices(tap, dilation, out_size, stride)] += contribution
        return grad
    weight_matrix = weight.reshape(groups, weight.shape[0] // groups, -1)  # (G, Co, Cg*K)
    check_im2col_budget(
        batch * math.prod(out_size),
        weight_matrix.shape[-1],
        groups,
        np.result_type(grad_output, weight).itemsize,
    )
    grad_columns = np.matmul(_grad_matrix(grad_output, groups), weight_matrix)
    grad_columns = grad_columns.reshape(groups, batch, *out_size, in_per_group, *kernel_size)
    order = (1, 0, 2 + dims, *range(2, 2 + dims), *range(3 + dims, 3 + 2 * dims))
    grad_columns = grad_columns.transpose(order)  # (N, G, Cg, *O, *K)
    grad = scatter_windows(
        grad_columns.reshape(batch, groups * in_per_group, *grad_columns.shape[3:]),
        padded_size,
        stride,
        dilation,
    )
    return grad


def scatter_windows(
    taps: np.ndarray,
    padded_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """col2im: add taps (N, C, *O, *K) onto (N, C, *padded_size) at q*stride + k*dilation.

    The adjoint of :func:`windows`; one strided add per kernel tap.
    """
    dims = len(stride)
    out_size = taps.shape[2 : 2 + dims]
    kernel_size = taps.shape[2 + dims :]
    grad = np.zeros((*taps.shape[:2], *padded_size), dtype=taps.dtype)
    for tap in np.ndindex(*kernel_size):  # inf + -inf is NaN, as IEEE says: no warning
        target = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilation, out_size, stride, strict=True)
        )
        destination: tuple[Any, ...] = (Ellipsis, *target)
        with np.errstate(invalid="ignore", over="ignore"):
            grad[destination] += taps[(Ellipsis, *tap)]
    return grad


def correlate_backward_weight(
    x_padded: np.ndarray,
    grad_output: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """Adjoint of :func:`correlate` in W: cols^T @ grad, as (G*Co, Cg, *kernel_size)."""
    out_size = grad_output.shape[2:]
    out_channels = grad_output.shape[1]
    if per_tap(groups, x_padded.shape[1] // groups):
        batch, dims = grad_output.shape[0], len(out_size)
        per_group = grad_output.reshape(batch, groups, out_channels // groups, *out_size)
        grad_weight = np.empty((out_channels, 1, *kernel_size), dtype=grad_output.dtype)
        axes = (0, *range(3, 3 + dims))
        for tap in np.ndindex(*kernel_size):
            taps = x_padded[_tap_slices(tap, dilation, out_size, stride)][:, :, np.newaxis]
            grad_weight[(slice(None), 0, *tap)] = (per_group * taps).sum(axis=axes).reshape(-1)
        return grad_weight
    columns = _columns(x_padded, groups, kernel_size, stride, dilation, out_size)
    grad_weight = np.matmul(columns.transpose(0, 2, 1), _grad_matrix(grad_output, groups))
    in_per_group = x_padded.shape[1] // groups
    return np.ascontiguousarray(grad_weight.transpose(0, 2, 1)).reshape(
        out_channels, in_per_group, *kernel_size
    )


def crop(array: np.ndarray, starts: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    """array[..., s0:s0+n0, s1:s1+n1, ...] over the trailing len(starts) axes."""
    index: tuple[Any, ...] = (
        Ellipsis,
        *(slice(start, start + size) for start, size in zip(starts, sizes, strict=True)),
    )
    return array[index]
