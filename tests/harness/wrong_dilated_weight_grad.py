"""A deliberately wrong user conv2d_backward: it forms grad_weight polyphase, splitting the
padded input into ``stride`` phases (each zero-padded to a common length) and reading tap k
from phase k mod stride at offset q + k*dilation // stride. That phase is right for an
undilated kernel, and with stride 1 there is one phase; but a dilated tap at k*dilation lies
in phase (k*dilation) mod stride, so grad_weight is wrong where an axis has stride > 1 and
dilation > 1 (with dilation mod stride != 1 and a kernel of 2 or more). The forward,
grad_input and grad_bias delegate to the reference, so only that bug can be found."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference
from reference.conv import plan_conv
from reference.padding import pad

name = "dilated-weight-gradient"


def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    return reference.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode)


def _positions(out: int, kernel: int, stride: int, dilation: int) -> np.ndarray:
    """(out, kernel) padded-input position each output reads at each tap, polyphase."""
    q, k = np.arange(out)[:, None], np.arange(kernel)[None, :]
    return stride * (q + k * dilation // stride) + k % stride  # the bug: phase k mod stride


def conv2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    grads = reference.conv2d_backward(
        grad_output, input, weight, bias, stride, padding, dilation, groups, padding_mode
    )
    plan = plan_conv(
        2, "conv2d", input, weight, bias, stride, padding, dilation, groups, padding_mode
    )
    knobs = list(zip(plan.out_size, weight.shape[2:], plan.stride, plan.dilation, strict=True))
    rows, cols = (_positions(*axis) for axis in knobs)
    right = [np.arange(o)[:, None] * s + np.arange(k)[None, :] * d for o, k, s, d in knobs]
    if np.array_equal(rows, right[0]) and np.array_equal(cols, right[1]):
        return grads
    padded = pad(plan.input, plan.pads, plan.padding_mode)
    phases = [(0, 0), (0, 0), (0, plan.stride[0] - 1), (0, plan.stride[1] - 1)]
    padded = np.pad(padded, phases)  # every phase as long as the first
    taps = padded[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # N, C, oh, ow, kh, kw
    batch, channels = padded.shape[:2]
    grad = grad_output[np.newaxis] if plan.unbatched else grad_output
    grad = grad.reshape(batch, groups, -1, *plan.out_size)
    taps = taps.reshape(batch, groups, channels // groups, *taps.shape[2:])
    grad_weight = np.einsum("ngcpqij,ngopq->gocij", taps, grad, optimize=True)
    return grads[0], grad_weight.reshape(weight.shape).astype(weight.dtype), grads[2]
