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
        for n, (before, after), k, s, d in zip(
            spatial, pads, kernel, stride, dilation, strict=False
        )
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
                        q, k, stride, dilation, pads, spatial, strict=False
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
            spatial, stride, padding, dilation, kernel, output_padding, strict=False
        )
    ]
    y = np.zeros((batch, out_per_group * groups, *out_size))
    for n, c in itertools.product(range(batch), range(in_channels)):
        group = c // in_per_group
        for i in itertools.product(*(range(size) for size in spatial)):
            for k in itertools.product(*(range(size) for size in kernel)):
                j = [
                    ii * s + kk * d - p
                    for ii, kk, s, d, p in zip(i, k, stride, dilation, padding, strict=False)
                ]
                if not all(0 <= jj < size for jj, size in zip(j, out_size, strict=False)):
                    continue
                for o in range(out_per_group):
                    y[(n, group * out_per_group + o, *j)] += x[(n, c, *i)] * weight[(c, o, *k)]
    if bias is not None:
        y += bias.reshape(-1, *([1] * len(spatial)))
    return y
