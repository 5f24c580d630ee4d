"""Build the torch.nn module a reference layer description describes (torch imported lazily).

The network-arithmetic checks compare the description's own arithmetic with what the real
module has and does: its parameters, its output shape, FlopCounterMode's count, and where
its input gradient is nonzero.
"""

from __future__ import annotations

from typing import Any

from reference import layers


def build(description: Any, input_ndim: int) -> Any:
    """The module for ``description``, applied to inputs with ``input_ndim`` dimensions."""
    import torch.nn as nn

    if isinstance(description, layers.Conv):
        return getattr(nn, f"Conv{description.dims}d")(
            description.in_channels,
            description.out_channels,
            description.kernel_size,
            description.stride,
            description.padding,
            description.dilation,
            description.groups,
            description.bias,
        )
    if isinstance(description, layers.ConvTranspose):
        return getattr(nn, f"ConvTranspose{description.dims}d")(
            description.in_channels,
            description.out_channels,
            description.kernel_size,
            description.stride,
            description.padding,
            description.output_padding,
            description.groups,
            description.bias,
            description.dilation,
        )
    if isinstance(description, layers.Linear):
        return nn.Linear(description.in_features, description.out_features, description.bias)
    if isinstance(description, layers.Pool):
        if description.kind == "max":
            return getattr(nn, f"MaxPool{description.dims}d")(
                description.kernel_size,
                description.stride,
                description.padding,
                description.dilation,
                ceil_mode=description.ceil_mode,
            )
        return getattr(nn, f"AvgPool{description.dims}d")(
            description.kernel_size,
            description.stride,
            description.padding,
            description.ceil_mode,
        )
    if isinstance(description, layers.BatchNorm):
        dims = max(1, input_ndim - 2)
        return getattr(nn, f"BatchNorm{dims}d")(description.num_features, affine=description.affine)
    if isinstance(description, layers.Sequential):
        return nn.Sequential(*(build(layer, input_ndim) for layer in description.layers))
    if isinstance(description, layers.Residual):
        return _residual(
            build(description.body, input_ndim),
            None if description.shortcut is None else build(description.shortcut, input_ndim),
        )
    raise TypeError(f"no torch module for {type(description).__name__}")


def _residual(body: Any, shortcut: Any) -> Any:
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.shortcut = shortcut if shortcut is not None else nn.Identity()

        def forward(self, x: Any) -> Any:
            return self.body(x) + self.shortcut(x)

    return Residual()
