"""im2col and col2im with torch.nn.functional's unfold / fold signatures (2-d, as torch has).

unfold: (N, C, H, W) -> (N, C*kh*kw, L), column l holding block l (row-major over the
blocks' grid) with channel-major rows c*kh*kw + i*kw + j, zero padding outside the input.
fold:   the adjoint, (N, C*kh*kw, L) -> (N, C, H, W), adding overlapping blocks. Hence
fold(unfold(x)) = x * fold(unfold(ones)), and each op's gradient is the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reference._arguments import (
    IntOrTuple,
    as_float_array,
    check_ndim,
    non_negative,
    ntuple,
    positive,
)
from reference._windows import constant_pad, crop, scatter_windows, windows
from reference.conv import check_grad_output


@dataclass(frozen=True)
class BlockPlan:
    channels: int
    size: tuple[int, ...]  # the image's spatial size
    kernel: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    stride: tuple[int, ...]
    blocks: tuple[int, ...]  # the grid of sliding blocks


def plan_blocks(
    channels: int,
    size: tuple[int, ...],
    kernel_size: IntOrTuple,
    dilation: IntOrTuple,
    padding: IntOrTuple,
    stride: IntOrTuple,
) -> BlockPlan:
    kernel = positive(ntuple(kernel_size, "kernel_size", 2), "kernel_size")
    dilations = positive(ntuple(dilation, "dilation", 2), "dilation")
    pads = non_negative(ntuple(padding, "padding", 2), "padding")
    strides = positive(ntuple(stride, "stride", 2), "stride")
    blocks = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(size, pads, dilations, kernel, strides, strict=True)
    )
    if any(b < 1 for b in blocks):
        raise ValueError(
            f"the grid of sliding blocks would be {blocks} for spatial size {size}, "
            f"kernel_size {kernel}, dilation {dilations}, padding {pads}, stride {strides}; "
            "each component must be at least one"
        )
    return BlockPlan(channels, tuple(size), kernel, dilations, pads, strides, blocks)


def _unfold(x: np.ndarray, plan: BlockPlan) -> np.ndarray:
    padded = constant_pad(x, [(0, 0), (0, 0), *[(p, p) for p in plan.padding]])
    view = windows(padded, plan.kernel, plan.stride, plan.dilation, plan.blocks)
    columns = view.transpose(0, 1, 4, 5, 2, 3)  # (N, C, kh, kw, bh, bw)
    return columns.reshape(
        x.shape[0], plan.channels * math.prod(plan.kernel), math.prod(plan.blocks)
    )


def _fold(columns: np.ndarray, plan: BlockPlan) -> np.ndarray:
    batch = columns.shape[0]
    taps = columns.reshape(batch, plan.channels, *plan.kernel, *plan.blocks)
    taps = taps.transpose(0, 1, 4, 5, 2, 3)  # (N, C, bh, bw, kh, kw)
    padded_size = [n + 2 * p for n, p in zip(plan.size, plan.padding, strict=True)]
    image = scatter_windows(taps, padded_size, plan.stride, plan.dilation)
    return crop(image, plan.padding, plan.size)


def _image(input: np.ndarray) -> tuple[np.ndarray, bool]:
    input = as_float_array(input, "input")
    check_ndim(input, "input", (3, 4), "unfold takes (C, H, W) or (N, C, H, W)")
    if any(n <= 0 for n in input.shape[-2:]):
        raise ValueError(f"input's spatial size must be positive, got shape {input.shape}")
    return (input[np.newaxis], True) if input.ndim == 3 else (input, False)


def _columns(
    input: np.ndarray,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple,
    padding: IntOrTuple,
    stride: IntOrTuple,
) -> tuple[np.ndarray, bool, BlockPlan]:
    input = as_float_array(input, "input")
    check_ndim(input, "input", (2, 3), "fold takes (C*kh*kw, L) or (N, C*kh*kw, L)")
    columns, unbatched = (input[np.newaxis], True) if input.ndim == 2 else (input, False)
    size = positive(ntuple(output_size, "output_size", 2), "output_size")
    kernel = positive(ntuple(kernel_size, "kernel_size", 2), "kernel_size")
    if columns.shape[1] % math.prod(kernel):
        raise ValueError(
            f"input's dimension {columns.ndim - 2} ({columns.shape[1]}) must be divisible by "
            f"the product of kernel_size {kernel}"
        )
    plan = plan_blocks(
        columns.shape[1] // math.prod(kernel), size, kernel, dilation, padding, stride
    )
    if columns.shape[2] != math.prod(plan.blocks):
        raise ValueError(
            f"input's last dimension ({columns.shape[2]}) must equal the number of sliding "
            f"blocks {math.prod(plan.blocks)} ({plan.blocks}) for output_size {size}"
        )
    return columns, unbatched, plan


def unfold(
    input: np.ndarray,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> np.ndarray:
    """im2col with torch.nn.functional.unfold's signature."""
    x, unbatched = _image(input)
    plan = plan_blocks(x.shape[1], x.shape[2:], kernel_size, dilation, padding, stride)
    out = _unfold(x, plan)
    return out[0] if unbatched else out


def unfold_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> tuple[np.ndarray]:
    """(grad_input,) of unfold: fold of the gradient."""
    x, unbatched = _image(input)
    plan = plan_blocks(x.shape[1], x.shape[2:], kernel_size, dilation, padding, stride)
    shape = (x.shape[0], plan.channels * math.prod(plan.kernel), math.prod(plan.blocks))
    grad = check_grad_output(grad_output, shape, unbatched, x.dtype)
    out = _fold(grad, plan)
    return (out[0] if unbatched else out,)


def fold(
    input: np.ndarray,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> np.ndarray:
    """col2im with torch.nn.functional.fold's signature: overlapping blocks add up."""
    columns, unbatched, plan = _columns(input, output_size, kernel_size, dilation, padding, stride)
    out = _fold(columns, plan)
    return out[0] if unbatched else out


def fold_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
) -> tuple[np.ndarray]:
    """(grad_input,) of fold: unfold of the gradient."""
    columns, unbatched, plan = _columns(input, output_size, kernel_size, dilation, padding, stride)
    shape = (columns.shape[0], plan.channels, *plan.size)
    grad = check_grad_output(grad_output, shape, unbatched, columns.dtype)
    out = np.ascontiguousarray(_unfold(grad, plan))
    return (out[0] if unbatched else out,)
