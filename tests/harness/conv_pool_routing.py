"""A test fixture: conv_max_pool computed exactly (float64) and rounded once to the tested
dtype, its backward routing each window's gradient by ``ROUTE``: "last", the window's last
maximum where torch takes the first (they differ only on exact ties, which the chain's bound
leaves open), or "min", the window's minimum (a wrong implementation the bound must catch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import reference
from conformance.catalogue.chains import chain_conv, chain_pooling
from reference.pool import plan_pool

name = "conv-pool-routing"
ROUTE = "last"


def accumulation_dtype(dtype: str) -> str:
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _f64(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.astype(np.float64)


def conv_max_pool(input: np.ndarray, weight: np.ndarray, bias: Any = None, **config: Any) -> Any:
    out = reference.conv_max_pool(_f64(input), _f64(weight), _f64(bias), **config)
    return out.astype(input.dtype)


def conv_max_pool_backward(
    grad_output: np.ndarray, input: np.ndarray, weight: np.ndarray, bias: Any = None, **config: Any
) -> tuple[Any, ...]:
    conv = chain_conv(config)
    x, w, b = _f64(input), _f64(weight), _f64(bias)
    unbatched = x.ndim == 3
    xb = x[np.newaxis] if unbatched else x
    g = grad_output.astype(np.float64)
    g = g[np.newaxis] if unbatched else g
    c = reference.conv2d(xb, w, b, **conv)
    plan = plan_pool(2, "max_pool2d", c, **chain_pooling(config))
    taps = plan.taps(c, -np.inf)
    valid, _ = plan.grids()
    if ROUTE == "last":
        best = taps.max(axis=-1, keepdims=True)
        chosen = taps.shape[-1] - 1 - np.argmax((taps == best)[..., ::-1], axis=-1)
    else:
        chosen = np.argmin(np.where(valid, taps, np.inf), axis=-1)
    one_hot = np.arange(taps.shape[-1]) == chosen[..., np.newaxis]
    grad_c = plan.scatter(np.where(one_hot, g[..., np.newaxis], 0.0))
    gi, gw, gb = reference.conv2d_backward(grad_c, xb, w, b, **conv)
    gi = gi[0] if unbatched else gi
    return tuple(None if a is None else a.astype(input.dtype) for a in (gi, gw, gb))
