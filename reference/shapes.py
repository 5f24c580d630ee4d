"""Output-size formulas of the convolution family, for ints or per-dimension tuples.

These are the formulas of the torch.nn.ConvNd / ConvTransposeNd documentation (and the
notebook's section 3); the conv ops compute their output shapes with these same functions.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from reference._arguments import IntOrTuple, flag, is_sequence, non_negative, ntuple, positive


def _dims(**arguments: object) -> int:
    """How many spatial dimensions the arguments describe (1 if every one is an int)."""
    lengths = {}
    for name, value in arguments.items():
        if is_sequence(value):
            assert isinstance(value, Sequence)
            if len(value) == 0:
                raise ValueError(f"{name} must be an int or a non-empty tuple, got {value!r}")
            lengths[name] = len(value)
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"tuple arguments disagree on the number of dimensions: {described}")
    return next(iter(lengths.values()), 1)


def _scalar_if_ints(result: tuple[int, ...], *values: object) -> int | tuple[int, ...]:
    if all(isinstance(v, numbers.Integral) for v in values):
        return result[0]
    return result


def conv_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> int | tuple[int, ...]:
    """floor((size + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1  (torch Conv docs).

    Raises ValueError when the dilated kernel does not fit in the padded input.
    """
    dims = _dims(
        size=size, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    sizes = positive(ntuple(size, "size", dims), "size")
    kernel = positive(ntuple(kernel_size, "kernel_size", dims), "kernel_size")
    strides = positive(ntuple(stride, "stride", dims), "stride")
    pads = non_negative(ntuple(padding, "padding", dims), "padding")
    dilations = positive(ntuple(dilation, "dilation", dims), "dilation")
    result = []
    for n, k, s, p, d in zip(sizes, kernel, strides, pads, dilations, strict=True):
        padded, extent = n + 2 * p, d * (k - 1) + 1
        if extent > padded:
            raise ValueError(
                f"kernel_size {k} with dilation {d} spans {extent}, larger than the padded "
                f"input size {padded}"
            )
        result.append((padded - extent) // s + 1)
    return _scalar_if_ints(tuple(result), size, kernel_size, stride, padding, dilation)


def conv_transpose_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> int | tuple[int, ...]:
    """(size-1)*stride - 2*padding + dilation*(kernel_size-1) + output_padding + 1.

    The ConvTranspose docs' formula; output_padding must be smaller than stride or dilation
    (it picks one of the input sizes that a strided conv maps onto ``size``).
    """
    dims = _dims(
        size=size,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )
    sizes = positive(ntuple(size, "size", dims), "size")
    kernel = positive(ntuple(kernel_size, "kernel_size", dims), "kernel_size")
    strides = positive(ntuple(stride, "stride", dims), "stride")
    pads = non_negative(ntuple(padding, "padding", dims), "padding")
    extra = non_negative(ntuple(output_padding, "output_padding", dims), "output_padding")
    dilations = positive(ntuple(dilation, "dilation", dims), "dilation")
    result = []
    for n, k, s, p, op, d in zip(sizes, kernel, strides, pads, extra, dilations, strict=True):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation, got "
                f"output_padding={op}, stride={s}, dilation={d}"
            )
        out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        if out < 1:
            raise ValueError(
                f"output size {out} is too small (input size {n}, padding {p}); it must be "
                "at least 1"
            )
        result.append(out)
    return _scalar_if_ints(
        tuple(result), size, kernel_size, stride, padding, output_padding, dilation
    )


def same_padding(kernel_size: IntOrTuple, dilation: IntOrTuple = 1) -> tuple[tuple[int, int], ...]:
    """(before, after) per dimension for padding='same' at stride 1.

    The total dilation*(kernel_size-1) is split with the odd extra element at the end, as
    torch's ``_convolution_mode`` and ``nn.ConvNd._reversed_padding_repeated_twice`` do.
    """
    dims = _dims(kernel_size=kernel_size, dilation=dilation)
    kernel = positive(ntuple(kernel_size, "kernel_size", dims), "kernel_size")
    dilations = positive(ntuple(dilation, "dilation", dims), "dilation")
    totals = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
    return tuple((total // 2, total - total // 2) for total in totals)


def pool_output_size(
    size: IntOrTuple,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> int | tuple[int, ...]:
    """Pooling output size, torch's ``pooling_output_shape``:

        out = floor_or_ceil((size + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1

    and with ceil_mode a last window that would start in the right padding (or past it) is
    dropped: if (out-1)*stride >= size + padding, out -= 1. stride defaults to kernel_size.
    Raises ValueError when the output would be empty.
    """
    if isinstance(stride, (tuple, list)) and len(stride) == 0:
        stride = None  # torch's pooling: an empty stride means kernel_size
    dims = _dims(
        size=size, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    sizes = positive(ntuple(size, "size", dims), "size")
    kernel = positive(ntuple(kernel_size, "kernel_size", dims), "kernel_size")
    strides = kernel if stride is None else positive(ntuple(stride, "stride", dims), "stride")
    ceil_mode = flag(ceil_mode, "ceil_mode")
    pads = non_negative(ntuple(padding, "padding", dims), "padding")
    dilations = positive(ntuple(dilation, "dilation", dims), "dilation")
    result = []
    for n, k, s, p, d in zip(sizes, kernel, strides, pads, dilations, strict=True):
        span = n + 2 * p - d * (k - 1) - 1
        out = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        if out < 1:
            raise ValueError(
                f"output size {out} is too small: input size {n}, padding {p}, kernel_size "
                f"{k}, dilation {d}, stride {s}"
            )
        result.append(out)
    return _scalar_if_ints(tuple(result), size, kernel_size, padding, dilation)
