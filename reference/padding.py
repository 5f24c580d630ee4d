"""Spatial padding in the four modes of ``torch.nn.ConvNd`` and its adjoint.

Every non-zero mode is a gather: padded position p (from -before to size+after-1) reads input
position idx(p) along each spatial axis, with
    reflect:   idx(p) = |p| mirrored at size-1   (edge not repeated; needs pad < size)
    replicate: idx(p) = clip(p, 0, size-1)
    circular:  idx(p) = p mod size               (needs pad <= size)
so the adjoint (the gradient of padding) scatter-adds through the same indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reference._windows import crop, zero_pad

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

Pads = Sequence[tuple[int, int]]


def check_padding_mode(padding_mode: object) -> str:
    if not isinstance(padding_mode, str):
        raise TypeError(
            f"padding_mode must be one of {PADDING_MODES}, got {type(padding_mode).__name__} "
            f"{padding_mode!r}"
        )
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return str(padding_mode)


def check_pads_fit(spatial_shape: Sequence[int], pads: Pads, padding_mode: str) -> None:
    """Enforce torch's limits: reflect needs pad < size, circular pad <= size."""
    for axis, (size, (before, after)) in enumerate(zip(spatial_shape, pads, strict=True)):
        largest = max(before, after)
        if padding_mode == "reflect" and largest >= size:
            raise ValueError(
                f"padding {largest} must be smaller than the input size {size} of spatial "
                f"dimension {axis} for padding_mode='reflect'"
            )
        if padding_mode == "circular" and largest > size:
            raise ValueError(
                f"padding {largest} must not exceed the input size {size} of spatial "
                f"dimension {axis} for padding_mode='circular' (it would wrap more than once)"
            )


def pad_indices(size: int, before: int, after: int, padding_mode: str) -> np.ndarray:
    """Source index of each padded position along one axis, for a non-zero mode."""
    positions = np.arange(-before, size + after)
    if padding_mode == "reflect":
        mirrored = np.abs(positions)
        return np.where(mirrored > size - 1, 2 * (size - 1) - mirrored, mirrored)
    if padding_mode == "replicate":
        return np.clip(positions, 0, size - 1)
    if padding_mode == "circular":
        return np.mod(positions, size)
    raise ValueError(f"padding_mode {padding_mode!r} has no gather indices")


def pad(x: np.ndarray, pads: Pads, padding_mode: str) -> np.ndarray:
    """Pad the trailing ``len(pads)`` axes of ``x``; ``pads[i] = (before, after)``."""
    if padding_mode == "zeros":
        return zero_pad(x, pads)
    first_spatial = x.ndim - len(pads)
    for offset, (before, after) in enumerate(pads):
        axis = first_spatial + offset
        if before or after:
            x = np.take(x, pad_indices(x.shape[axis], before, after, padding_mode), axis=axis)
    return x


def pad_backward(
    grad_padded: np.ndarray, spatial_shape: Sequence[int], pads: Pads, padding_mode: str
) -> np.ndarray:
    """Adjoint of :func:`pad`: fold the gradient of the padded array back onto the input."""
    first_spatial = grad_padded.ndim - len(pads)
    if padding_mode == "zeros":
        return crop(grad_padded, [before for before, _ in pads], spatial_shape)
    grad = grad_padded
    for offset in reversed(range(len(pads))):
        before, after = pads[offset]
        if not (before or after):
            continue
        axis = first_spatial + offset
        size = spatial_shape[offset]
        moved = np.moveaxis(grad, axis, 0)
        folded = np.zeros((size, *moved.shape[1:]), dtype=grad.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, as IEEE says
            np.add.at(folded, pad_indices(size, before, after, padding_mode), moved)
        grad = np.moveaxis(folded, 0, axis)
    return grad
