"""A test fixture: lp pooling and its gradient computed step by step in the input's own dtype,
every intermediate rounded to it, following torch's autograd graph of F.lp_pool1d/2d:

    forward   A = x**p, S = sum of A over the window (in window order), y = S**(1/p)
    backward  c = g * ((1/p) * S**(1/p - 1)), then times K and divided by K (torch's kernel
              scale and avg_pool's divisor), G = sum of c over the windows holding an element,
              grad = G * (p * x**(p - 1))

With the documented sum (not torch's kernel / count rescaling of a ceil-mode partial window) and
the derivative 1 of a norm_type 1 window summing to 0, so that it differs from the oracle only by
its arithmetic. In float16 its intermediates underflow (x**2 of x = 1.4e-4 is 2e-8, below half
the least subnormal: 0) and overflow (S**(1/p - 1) of a tiny S): the error model must judge it
within the bound of arithmetic done in the dtype, never a failure.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import reference

name = "float16-steps"


def _plan(
    input: np.ndarray, dims: int, kernel_size: Any, stride: Any, ceil_mode: bool
) -> tuple[np.ndarray, bool, list[tuple[tuple[int, ...], list[tuple[int, ...]]]]]:
    """The batched input, whether it was unbatched, and each output position with the input
    positions of its window (clipped to the input, in window order)."""
    unbatched = input.ndim == dims + 1
    x = input[np.newaxis] if unbatched else input
    kernel = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
    if stride is None:
        strides = kernel
    else:
        strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    sizes = tuple(x.shape[2:])
    out = reference.pool_output_size(sizes, kernel, strides, 0, 1, ceil_mode)
    assert isinstance(out, tuple)
    windows = []
    for position in itertools.product(*(range(o) for o in out)):
        taps = [
            tuple(p * s + t for p, s, t in zip(position, strides, tap, strict=True))
            for tap in itertools.product(*(range(k) for k in kernel))
        ]
        inside = [tap for tap in taps if all(i < n for i, n in zip(tap, sizes, strict=True))]
        windows.append((position, inside))
    return x, unbatched, windows


def _kernel_size(kernel_size: Any, dims: int) -> int:
    kernel = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
    return int(np.prod(kernel))


def _sums(x: np.ndarray, p: Any, windows: list) -> dict[tuple[int, ...], np.ndarray]:
    """S per output position, (N, C): x**p stored, then added in window order, all rounded."""
    powered = np.power(x, p)
    sums = {}
    for position, inside in windows:
        total = np.zeros(x.shape[:2], dtype=x.dtype)
        for tap in inside:
            total = total + powered[(..., *tap)]
        sums[position] = total
    return sums


def _forward(dims: int) -> Any:
    def lp_pool(
        input: np.ndarray,
        norm_type: float,
        kernel_size: Any,
        stride: Any = None,
        ceil_mode: bool = False,
    ) -> np.ndarray:
        dtype = input.dtype.type
        x, unbatched, windows = _plan(input, dims, kernel_size, stride, ceil_mode)
        p = dtype(norm_type)
        sums = _sums(x, p, windows)
        out_shape = tuple(max(pos[d] for pos, _ in windows) + 1 for d in range(dims))
        y = np.zeros((*x.shape[:2], *out_shape), dtype=x.dtype)
        with np.errstate(all="ignore"):
            for position, total in sums.items():
                y[(..., *position)] = np.power(total, dtype(1) / p)
        return y[0] if unbatched else y

    return lp_pool


def _backward(dims: int) -> Any:
    def lp_pool_backward(
        grad_output: np.ndarray,
        input: np.ndarray,
        norm_type: float,
        kernel_size: Any,
        stride: Any = None,
        ceil_mode: bool = False,
    ) -> tuple[np.ndarray]:
        dtype = input.dtype.type
        x, unbatched, windows = _plan(input, dims, kernel_size, stride, ceil_mode)
        g = grad_output[np.newaxis] if unbatched else grad_output
        p = dtype(norm_type)
        scale = dtype(_kernel_size(kernel_size, dims))
        gathered = np.zeros_like(x)
        with np.errstate(all="ignore"):
            sums = _sums(x, p, windows)
            for position, inside in windows:
                total = sums[position]
                root = np.power(total, dtype(1) / p - dtype(1))
                coefficient = g[(..., *position)] * (root * (dtype(1) / p))
                coefficient = (coefficient * scale) / scale
                if norm_type != 1:  # the kink of S**(1/p) at S = 0: gradient 0 there
                    coefficient = np.where(total == 0, dtype(0), coefficient)
                for tap in inside:
                    index = (..., *tap)
                    gathered[index] = gathered[index] + coefficient
            grad_input = gathered * (p * np.power(x, p - dtype(1)))
        return (grad_input[0] if unbatched else grad_input,)

    return lp_pool_backward


lp_pool1d, lp_pool1d_backward = _forward(1), _backward(1)
lp_pool2d, lp_pool2d_backward = _forward(2), _backward(2)
