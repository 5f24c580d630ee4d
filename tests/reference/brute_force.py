"""Loop-per-output-element definitions, independent of the vectorized reference.

Slow on purpose: every index is spelled out, so a tiny case is decided by reading the loop.
"""

from __future__ import annotations

import itertools

import numpy as np


def source_index(position: int, size: int, padding_mode: str) -> int | None:
    """Which input index padded ``position`` (relative to the unpadded start) reads."""
    if 0 <= position < size:
        return position
    if padding_mode == "zeros":
        return None
    if padding_mode == "replicate":
        return min(max(position, 0), size - 1)
    if padding_mode == "circular":
        return position % size
    while not 0 <= position < size:  # reflect: mirror at both edges, the edge not repeated
        position = -position if position < 0 else 2 * (size - 1) - position
    return position


def conv(x, weight, bias, stride, pads, dilation, groups, padding_mode):  # type: ignore[no-untyped-def]
    """y[n,o,q] = b[o] + sum_{c,k} W[o,c,k] x_pad[n, g(o)*Cg + c, q*s + k*d]; x batched."""
    batch, _, *spatial = x.shape
    out_channels, in_per_group, *kernel = weight.shape
    out_per_group = out_channels // groups
    out_size = [
        (n + before + after - d * (k - 1) - 1) // s + 1
        for n, (before, after), k, s, d in zip(spatial, pads, kernel, stride, dilation, strict=True)
    ]
    y = np.zeros((batch, out_channels, *out_size))
    for n, o in itertools.product(range(batch), range(out_channels)):
        group = o // out_per_group
        for q in itertools.product(*(range(size) for size in out_size)):
            total = 0.0 if bias is None else bias[o]
            for c in range(in_per_group):
                for k in itertools.product(*(range(size) for size in kernel)):
                    index = []
                    for qi, ki, s, d, (before, _), size in zip(
                        q, k, stride, dilation, pads, spatial, strict=True
                    ):
                        index.append(source_index(qi * s + ki * d - before, size, padding_mode))
                    if None in index:
                        continue
                    total += weight[(o, c, *k)] * x[(n, group * in_per_group + c, *index)]
            y[(n, o, *q)] = total
    return y


def conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation):  # type: ignore[no-untyped-def]
    """Scatter definition: x[n,c,i] W[c,o,k] lands on output j = i*s + k*d - p."""
    batch, in_channels, *spatial = x.shape
    _, out_per_group, *kernel = weight.shape
    in_per_group = in_channels // groups
    out_size = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(
            spatial, stride, padding, dilation, kernel, output_padding, strict=True
        )
    ]
    y = np.zeros((batch, out_per_group * groups, *out_size))
    for n, c in itertools.product(range(batch), range(in_channels)):
        group = c // in_per_group
        for i in itertools.product(*(range(size) for size in spatial)):
            for k in itertools.product(*(range(size) for size in kernel)):
                j = [
                    ii * s + kk * d - p
                    for ii, kk, s, d, p in zip(i, k, stride, dilation, padding, strict=True)
                ]
                if not all(0 <= jj < size for jj, size in zip(j, out_size, strict=True)):
                    continue
                for o in range(out_per_group):
                    y[(n, group * out_per_group + o, *j)] += x[(n, c, *i)] * weight[(c, o, *k)]
    if bias is not None:
        y += bias.reshape(-1, *([1] * len(spatial)))
    return y


def _window_positions(
    q: tuple[int, ...], kernel, stride, padding, dilation, spatial
) -> list[tuple[tuple[int, ...], bool]]:
    """Every tap of window q in row-major order: (position, inside the input)."""
    taps = []
    for k in itertools.product(*(range(size) for size in kernel)):
        position = tuple(
            qi * s - p + ki * d
            for qi, ki, s, p, d in zip(q, k, stride, padding, dilation, strict=True)
        )
        inside = all(0 <= pi < size for pi, size in zip(position, spatial, strict=True))
        taps.append((position, inside))
    return taps


def pool_out_size(size, k, s, p, d, ceil_mode):  # type: ignore[no-untyped-def]
    """torch's pooling_output_shape, spelled out."""
    import math

    span = (size + 2 * p - d * (k - 1) - 1) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):  # type: ignore[no-untyped-def]
    """Scan each window from its first in-bounds element, replacing the maximum when a value
    is greater or NaN (torch's rule); -inf and index -1 for a window with nothing inside."""
    batch, channels, *spatial = x.shape
    out_size = [
        pool_out_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True)
    ]
    values = np.full((batch, channels, *out_size), -np.inf)
    indices = np.full((batch, channels, *out_size), -1, dtype=np.int64)
    for n, c in itertools.product(range(batch), range(channels)):
        for q in itertools.product(*(range(size) for size in out_size)):
            best, where = -np.inf, -1
            for position, inside in _window_positions(
                q, kernel, stride, padding, dilation, spatial
            ):
                if not inside:
                    continue
                value = x[(n, c, *position)]
                flat = int(np.ravel_multi_index(position, spatial))
                if where == -1:
                    where = flat
                if value > best or np.isnan(value):
                    best, where = value, flat
            if where != -1:
                values[(n, c, *q)] = x[(n, c, *np.unravel_index(where, spatial))]
            indices[(n, c, *q)] = where
    return values, indices


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):  # type: ignore[no-untyped-def]
    batch, channels, *spatial = x.shape
    out_size = [
        pool_out_size(n, k, s, p, 1, ceil_mode)
        for n, k, s, p in zip(spatial, kernel, stride, padding, strict=True)
    ]
    y = np.zeros((batch, channels, *out_size))
    for n, c in itertools.product(range(batch), range(channels)):
        for q in itertools.product(*(range(size) for size in out_size)):
            taps = _window_positions(q, kernel, stride, padding, [1] * len(kernel), spatial)
            total = sum(x[(n, c, *position)] for position, inside in taps if inside)
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:  # the window cut at the end of the right padding
                divisor = 1
                for qi, k, s, p, size in zip(q, kernel, stride, padding, spatial, strict=True):
                    start = qi * s - p
                    divisor *= min(start + k, size + p) - start
            else:
                divisor = sum(1 for _, inside in taps if inside)
            y[(n, c, *q)] = total / divisor
    return y


def lp_pool(x, norm_type, kernel, stride, ceil_mode):  # type: ignore[no-untyped-def]
    """(sum over the window's elements of x**p) ** (1/p): torch's documented f(X)."""
    batch, channels, *spatial = x.shape
    out_size = [
        pool_out_size(n, k, s, 0, 1, ceil_mode)
        for n, k, s in zip(spatial, kernel, stride, strict=True)
    ]
    y = np.zeros((batch, channels, *out_size))
    ones = [1] * len(kernel)
    for n, c in itertools.product(range(batch), range(channels)):
        for q in itertools.product(*(range(size) for size in out_size)):
            taps = _window_positions(q, kernel, stride, [0] * len(kernel), ones, spatial)
            total = sum(x[(n, c, *position)] ** norm_type for position, inside in taps if inside)
            y[(n, c, *q)] = total ** (1.0 / norm_type)
    return y


def adaptive_windows(size: int, out: int) -> list[range]:
    """Output i pools [floor(i*size/out), ceil((i+1)*size/out))."""
    import math

    return [range(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def adaptive_pool(x, out_size, reduce):  # type: ignore[no-untyped-def]
    """reduce(list of (flat index, value)) per window, windows from adaptive_windows."""
    batch, channels, *spatial = x.shape
    ranges = [adaptive_windows(n, o) for n, o in zip(spatial, out_size, strict=True)]
    results = {}
    for n, c in itertools.product(range(batch), range(channels)):
        for q in itertools.product(*(range(size) for size in out_size)):
            cells = [
                (int(np.ravel_multi_index(position, spatial)), x[(n, c, *position)])
                for position in itertools.product(*(ranges[a][qa] for a, qa in enumerate(q)))
            ]
            results[(n, c, *q)] = reduce(cells)
    return results


def unfold(x, kernel, dilation, padding, stride):  # type: ignore[no-untyped-def]
    """Column l, row c*kh*kw + i*kw + j: x at block l's (i, j) tap, 0 in the padding."""
    batch, channels, height, width = x.shape
    kh, kw = kernel
    blocks = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip((height, width), padding, dilation, kernel, stride, strict=True)
    ]
    columns = np.zeros((batch, channels * kh * kw, blocks[0] * blocks[1]))
    for n, c, i, j, bh, bw in itertools.product(
        range(batch), range(channels), range(kh), range(kw), range(blocks[0]), range(blocks[1])
    ):
        row = bh * stride[0] - padding[0] + i * dilation[0]
        col = bw * stride[1] - padding[1] + j * dilation[1]
        if 0 <= row < height and 0 <= col < width:
            columns[n, c * kh * kw + i * kw + j, bh * blocks[1] + bw] = x[n, c, row, col]
    return columns
