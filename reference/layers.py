"""Layer descriptions mirroring torch.nn modules: output shape, parameters, multiply-adds.

Conventions (stated once, used everywhere):
- parameter_count: learnable scalars, as sum(p.numel() for p in module.parameters()).
- macs(input_shape): multiply-accumulates of the layer's products: a convolution output
  element is sum over in_channels/groups * prod(kernel_size) products (padded zeros
  included, as a dense kernel computes them); a transposed convolution counts the products
  x[i] * w[k] whose result lands inside the (cropped) output; Linear in * out per row. Bias
  additions are not multiply-adds: ``bias_adds`` counts them. Pooling, BatchNorm and the
  residual addition have no products (macs = 0).
- flops(input_shape): FLOP = 2 MACs. ``forward``, and backward split into ``grad_input`` and
  ``grad_weight``; for a convolution or Linear each equals the forward count (the adjoint
  products pair the same operands).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reference._arguments import (
    describe,
    flag,
    int_arg,
    is_int,
    is_sequence,
    non_negative,
    ntuple,
    positive,
    positive_int,
    shape_arg,
)
from reference.shapes import conv_output_size, conv_transpose_output_size, pool_output_size

Shape = tuple[int, ...]
Knob = int | Shape


def _set(layer: object, name: str, value: object) -> None:
    """Store a validated, normalized field on a frozen description (np.int64(3) as 3, a list
    as a tuple), so that equal layers compare and hash equal."""
    object.__setattr__(layer, name, value)


def _knob(value: object, name: str, dims: int, minimum: int) -> Knob:
    """An int or a tuple of ``dims`` ints, each at least ``minimum``; normalized."""
    values = ntuple(value, name, dims)
    (positive if minimum > 0 else non_negative)(values, name)
    return values[0] if is_int(value) else values


def _check_layer(layer: object, name: str) -> None:
    """A description with the methods every layer has (anything else fails deep inside)."""
    missing = [
        method
        for method in ("output_shape", "parameter_count", "macs", "flops")
        if not callable(getattr(layer, method, None))
    ]
    if missing:
        raise TypeError(
            f"{name} must be a layer description (reference.layers: Conv, ConvTranspose, "
            f"Linear, Pool, BatchNorm, Sequential or Residual), got {describe(layer)} without "
            f"{', '.join(missing)}"
        )


def product_flops(macs: int) -> dict[str, int]:
    """FLOP = 2 MACs; grad_input and grad_weight pair the same operands as the forward."""
    macs = int_arg(macs, "macs")
    if macs < 0:
        raise ValueError(f"macs must be non-negative, got {macs}")
    forward = 2 * macs
    return {"forward": forward, "grad_input": forward, "grad_weight": forward}


def _input_shape(input_shape: object, dims: int) -> Shape:
    """(C, *spatial) or (N, C, *spatial) with ``dims`` positive spatial sizes."""
    shape = shape_arg(input_shape, "input_shape")
    if len(shape) not in (dims + 1, dims + 2):
        raise ValueError(f"input_shape must have {dims + 1} or {dims + 2} entries, got {shape}")
    if any(n <= 0 for n in shape[-dims:]):
        raise ValueError(f"input_shape's spatial sizes must be positive, got {shape}")
    return shape


def _batch_and_spatial(input_shape: Shape, dims: int, channels: int) -> tuple[int, Shape]:
    input_shape = _input_shape(input_shape, dims)
    if input_shape[-dims - 1] != channels:
        raise ValueError(f"input_shape {input_shape} must have {channels} channels")
    batch = input_shape[0] if len(input_shape) == dims + 2 else 1
    return batch, tuple(input_shape[-dims:])


def _with_batch(input_shape: Shape, dims: int, channels: int, spatial: Shape) -> Shape:
    batch = tuple(int(n) for n in input_shape[: len(input_shape) - dims - 1])  # np.int64 too
    return (*batch, channels, *spatial)


@dataclass(frozen=True)
class Conv:
    """torch.nn.Conv{dims}d (zeros padding; 'same' and 'valid' as strings)."""

    dims: int
    in_channels: int
    out_channels: int
    kernel_size: int | Shape
    stride: int | Shape = 1
    padding: int | Shape | str = 0
    dilation: int | Shape = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        dims = positive_int(self.dims, "dims")
        _set(self, "dims", dims)
        _channels(self, "in_channels", "out_channels")
        _set(self, "kernel_size", _knob(self.kernel_size, "kernel_size", dims, 1))
        _set(self, "stride", _knob(self.stride, "stride", dims, 1))
        if isinstance(self.padding, str):
            if self.padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or ints, got {self.padding!r}")
            if self.padding == "same" and any(s != 1 for s in ntuple(self.stride, "", dims)):
                raise ValueError(f"padding='same' requires stride 1, got stride={self.stride}")
        else:
            _set(self, "padding", _knob(self.padding, "padding", dims, 0))
        _set(self, "dilation", _knob(self.dilation, "dilation", dims, 1))
        _groups(self, "in_channels", "out_channels")
        _set(self, "bias", flag(self.bias, "bias"))

    def kernel(self) -> Shape:
        return ntuple(self.kernel_size, "kernel_size", self.dims)

    def _spatial_out(self, spatial: Shape) -> Shape:
        if self.padding == "same":
            return spatial
        padding = 0 if self.padding == "valid" else self.padding
        assert not isinstance(padding, str)
        out = conv_output_size(spatial, self.kernel(), self.stride, padding, self.dilation)
        assert isinstance(out, tuple)
        return out

    def output_shape(self, input_shape: Shape) -> Shape:
        _, spatial = _batch_and_spatial(input_shape, self.dims, self.in_channels)
        return _with_batch(input_shape, self.dims, self.out_channels, self._spatial_out(spatial))

    def parameter_count(self) -> int:
        weight = self.out_channels * self.in_channels // self.groups * math.prod(self.kernel())
        return weight + (self.out_channels if self.bias else 0)

    def macs(self, input_shape: Shape) -> int:
        batch, spatial = _batch_and_spatial(input_shape, self.dims, self.in_channels)
        per_output = self.in_channels // self.groups * math.prod(self.kernel())
        return batch * self.out_channels * math.prod(self._spatial_out(spatial)) * per_output

    def bias_adds(self, input_shape: Shape) -> int:
        if not self.bias:
            return 0
        batch, spatial = _batch_and_spatial(input_shape, self.dims, self.in_channels)
        return batch * self.out_channels * math.prod(self._spatial_out(spatial))

    def flops(self, input_shape: Shape) -> dict[str, int]:
        return product_flops(self.macs(input_shape))


@dataclass(frozen=True)
class ConvTranspose:
    """torch.nn.ConvTranspose{dims}d."""

    dims: int
    in_channels: int
    out_channels: int
    kernel_size: int | Shape
    stride: int | Shape = 1
    padding: int | Shape = 0
    output_padding: int | Shape = 0
    groups: int = 1
    bias: bool = True
    dilation: int | Shape = 1

    def __post_init__(self) -> None:
        dims = positive_int(self.dims, "dims")
        _set(self, "dims", dims)
        _channels(self, "in_channels", "out_channels")
        _set(self, "kernel_size", _knob(self.kernel_size, "kernel_size", dims, 1))
        _set(self, "stride", _knob(self.stride, "stride", dims, 1))
        _set(self, "padding", _knob(self.padding, "padding", dims, 0))
        _set(self, "output_padding", _knob(self.output_padding, "output_padding", dims, 0))
        _groups(self, "in_channels", "out_channels")
        _set(self, "bias", flag(self.bias, "bias"))
        _set(self, "dilation", _knob(self.dilation, "dilation", dims, 1))
        strides, dilations = ntuple(self.stride, "", dims), ntuple(self.dilation, "", dims)
        extra = ntuple(self.output_padding, "", dims)
        if any(op >= max(s, d) for op, s, d in zip(extra, strides, dilations, strict=True)):
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation, got "
                f"output_padding={self.output_padding}, stride={self.stride}, "
                f"dilation={self.dilation}"
            )

    def kernel(self) -> Shape:
        return ntuple(self.kernel_size, "kernel_size", self.dims)

    def _spatial_out(self, spatial: Shape) -> Shape:
        out = conv_transpose_output_size(
            spatial, self.kernel(), self.stride, self.padding, self.output_padding, self.dilation
        )
        assert isinstance(out, tuple)
        return out

    def output_shape(self, input_shape: Shape) -> Shape:
        _, spatial = _batch_and_spatial(input_shape, self.dims, self.in_channels)
        return _with_batch(input_shape, self.dims, self.out_channels, self._spatial_out(spatial))

    def parameter_count(self) -> int:
        weight = self.in_channels * self.out_channels // self.groups * math.prod(self.kernel())
        return weight + (self.out_channels if self.bias else 0)

    def macs(self, input_shape: Shape) -> int:
        """Pairs (input position, kernel tap) whose target i*s + k*d - p is inside the output,
        times the channel pairs: a product whose result is cropped away is not needed."""
        batch, spatial = _batch_and_spatial(input_shape, self.dims, self.in_channels)
        out = self._spatial_out(spatial)
        strides = ntuple(self.stride, "stride", self.dims)
        pads = ntuple(self.padding, "padding", self.dims)
        dilations = ntuple(self.dilation, "dilation", self.dims)
        landing = 1
        for n, k, s, p, d, o in zip(
            spatial, self.kernel(), strides, pads, dilations, out, strict=True
        ):
            landing *= sum(1 for i in range(n) for t in range(k) if 0 <= i * s + t * d - p < o)
        return batch * self.in_channels * (self.out_channels // self.groups) * landing

    def flops(self, input_shape: Shape) -> dict[str, int]:
        return product_flops(self.macs(input_shape))


@dataclass(frozen=True)
class Linear:
    """torch.nn.Linear on (*, in_features)."""

    in_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        _channels(self, "in_features", "out_features")
        _set(self, "bias", flag(self.bias, "bias"))

    def output_shape(self, input_shape: Shape) -> Shape:
        input_shape = shape_arg(input_shape, "input_shape")
        if not input_shape or input_shape[-1] != self.in_features:
            raise ValueError(f"input_shape {input_shape} must end in {self.in_features}")
        return (*input_shape[:-1], self.out_features)

    def parameter_count(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, input_shape: Shape) -> int:
        rows = self.output_shape(input_shape)[:-1]  # validated, as Python ints
        return math.prod(rows) * self.in_features * self.out_features

    def flops(self, input_shape: Shape) -> dict[str, int]:
        return product_flops(self.macs(input_shape))


@dataclass(frozen=True)
class Pool:
    """torch.nn.MaxPool{dims}d ("max", with dilation) or AvgPool{dims}d ("avg")."""

    kind: str
    dims: int
    kernel_size: int | Shape
    stride: int | Shape | None = None
    padding: int | Shape = 0
    dilation: int | Shape = 1
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in ("max", "avg"):
            raise ValueError(f"kind must be 'max' or 'avg', got {describe(self.kind)}")
        dims = positive_int(self.dims, "dims")
        _set(self, "dims", dims)
        _set(self, "kernel_size", _knob(self.kernel_size, "kernel_size", dims, 1))
        if self.stride is not None:
            _set(self, "stride", _knob(self.stride, "stride", dims, 1))
        _set(self, "padding", _knob(self.padding, "padding", dims, 0))
        pads, kernel = ntuple(self.padding, "", dims), ntuple(self.kernel_size, "", dims)
        if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
            raise ValueError(
                f"padding must be at most half of kernel_size, got {self.padding} for "
                f"{self.kernel_size}"
            )
        _set(self, "dilation", _knob(self.dilation, "dilation", dims, 1))
        if self.kind == "avg" and set(ntuple(self.dilation, "", dims)) != {1}:
            raise ValueError(f"dilation must be 1 for average pooling, got {self.dilation}")
        _set(self, "ceil_mode", flag(self.ceil_mode, "ceil_mode"))

    def output_shape(self, input_shape: Shape) -> Shape:
        input_shape = _input_shape(input_shape, self.dims)
        spatial = tuple(input_shape[-self.dims :])
        out = pool_output_size(
            spatial,
            ntuple(self.kernel_size, "kernel_size", self.dims),
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
        )
        assert isinstance(out, tuple)
        return (*input_shape[: -self.dims], *out)

    def parameter_count(self) -> int:
        return 0

    def macs(self, input_shape: Shape) -> int:
        self.output_shape(input_shape)  # no products, but a shape that fits
        return 0

    def flops(self, input_shape: Shape) -> dict[str, int]:
        return product_flops(self.macs(input_shape))


@dataclass(frozen=True)
class BatchNorm:
    """torch.nn.BatchNorm{1,2,3}d: a weight and a bias per channel when affine."""

    num_features: int
    affine: bool = True

    def __post_init__(self) -> None:
        _set(self, "num_features", positive_int(self.num_features, "num_features"))
        _set(self, "affine", flag(self.affine, "affine"))

    def output_shape(self, input_shape: Shape) -> Shape:
        input_shape = shape_arg(input_shape, "input_shape")
        if len(input_shape) < 2 or input_shape[1] != self.num_features:
            raise ValueError(f"input_shape {input_shape} must have {self.num_features} channels")
        return tuple(input_shape)

    def parameter_count(self) -> int:
        return 2 * self.num_features if self.affine else 0

    def macs(self, input_shape: Shape) -> int:
        self.output_shape(input_shape)  # no products, but a shape that fits
        return 0

    def flops(self, input_shape: Shape) -> dict[str, int]:
        return product_flops(self.macs(input_shape))


def _channels(layer: Conv | ConvTranspose | Linear, *names: str) -> None:
    for name in names:
        _set(layer, name, positive_int(getattr(layer, name), name))


def _groups(layer: Conv | ConvTranspose, *names: str) -> None:
    """groups: a positive int dividing each of the channel counts ``names`` (torch's rule)."""
    groups = positive_int(layer.groups, "groups")
    for name in names:
        if getattr(layer, name) % groups:
            raise ValueError(
                f"{name} ({getattr(layer, name)}) must be divisible by groups={groups}"
            )
    _set(layer, "groups", groups)


class LayerLike(Protocol):
    def output_shape(self, input_shape: Shape) -> Shape: ...
    def parameter_count(self) -> int: ...
    def macs(self, input_shape: Shape) -> int: ...
    def flops(self, input_shape: Shape) -> dict[str, int]: ...


@dataclass(frozen=True)
class Sequential:
    """torch.nn.Sequential: shapes flow through, counts add up."""

    layers: Sequence[LayerLike] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not is_sequence(self.layers):
            raise TypeError(f"layers must be a sequence of layers, got {describe(self.layers)}")
        for position, layer in enumerate(self.layers):
            _check_layer(layer, f"layers[{position}]")
        _set(self, "layers", tuple(self.layers))

    def _shapes(self, input_shape: Shape) -> list[Shape]:
        shapes = [shape_arg(input_shape, "input_shape")]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return shapes

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._shapes(input_shape)[-1]

    def parameter_count(self) -> int:
        return sum(layer.parameter_count() for layer in self.layers)

    def macs(self, input_shape: Shape) -> int:
        shapes = self._shapes(input_shape)
        return sum(layer.macs(shape) for layer, shape in zip(self.layers, shapes, strict=False))

    def flops(self, input_shape: Shape) -> dict[str, int]:
        shapes = self._shapes(input_shape)
        total = {"forward": 0, "grad_input": 0, "grad_weight": 0}
        for layer, shape in zip(self.layers, shapes, strict=False):
            for key, value in layer.flops(shape).items():
                total[key] += value
        return total


@dataclass(frozen=True)
class Residual:
    """y = body(x) + shortcut(x), the shortcut the identity when None (He et al. 2016)."""

    body: Sequential
    shortcut: Sequential | None = None

    def __post_init__(self) -> None:
        _check_layer(self.body, "body")
        if self.shortcut is not None:
            _check_layer(self.shortcut, "shortcut")

    def output_shape(self, input_shape: Shape) -> Shape:
        input_shape = shape_arg(input_shape, "input_shape")
        out = self.body.output_shape(input_shape)
        skip = input_shape if self.shortcut is None else self.shortcut.output_shape(input_shape)
        if tuple(out) != tuple(skip):
            raise ValueError(f"residual paths disagree on the shape: {out} and {skip}")
        return out

    def parameter_count(self) -> int:
        return self.body.parameter_count() + (
            0 if self.shortcut is None else self.shortcut.parameter_count()
        )

    def macs(self, input_shape: Shape) -> int:
        return self.body.macs(input_shape) + (
            0 if self.shortcut is None else self.shortcut.macs(input_shape)
        )

    def flops(self, input_shape: Shape) -> dict[str, int]:
        total = dict(self.body.flops(input_shape))
        if self.shortcut is not None:
            for key, value in self.shortcut.flops(input_shape).items():
                total[key] += value
        return total


def depthwise_separable(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    multiplier: int = 1,
    stride: int = 1,
    padding: int | str = 0,
    bias: bool = True,
) -> Sequential:
    """Depthwise (groups = in_channels) then pointwise (1x1) convolution (Chollet 2017)."""
    in_channels = positive_int(in_channels, "in_channels")
    multiplier = positive_int(multiplier, "multiplier")
    depthwise = Conv(
        dims,
        in_channels,
        in_channels * multiplier,
        kernel_size,
        stride,
        padding,
        groups=in_channels,
        bias=bias,
    )
    pointwise = Conv(dims, in_channels * multiplier, out_channels, 1, bias=bias)
    return Sequential((depthwise, pointwise))


def basic_residual_block(in_channels: int, out_channels: int, stride: int = 1) -> Residual:
    """conv3x3-BN-ReLU-conv3x3-BN plus the identity, or a strided 1x1 conv + BN projection
    when the shape changes (ResNet's basic block)."""
    in_channels = positive_int(in_channels, "in_channels")
    out_channels = positive_int(out_channels, "out_channels")
    positive(ntuple(stride, "stride", 2), "stride")
    body = Sequential(
        (
            Conv(2, in_channels, out_channels, 3, stride, 1, bias=False),
            BatchNorm(out_channels),
            Conv(2, out_channels, out_channels, 3, 1, 1, bias=False),
            BatchNorm(out_channels),
        )
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:  # as torchvision's BasicBlock decides
        shortcut = Sequential(
            (
                Conv(2, in_channels, out_channels, 1, stride, bias=False),
                BatchNorm(out_channels),
            )
        )
    return Residual(body, shortcut)


def patch_embedding(in_channels: int, embed_dim: int, patch: int) -> Conv:
    """ViT's patch embedding: a convolution with kernel_size = stride = patch."""
    embed_dim = positive_int(embed_dim, "embed_dim")
    patch = positive_int(patch, "patch")
    return Conv(2, in_channels, embed_dim, patch, patch)
