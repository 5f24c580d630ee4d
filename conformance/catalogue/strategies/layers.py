"""Layer descriptions with a valid input shape, by construction."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from reference import layers

Drawn = tuple[Any, tuple[int, ...]]  # (description, input shape)


@st.composite
def conv_layers(draw: st.DrawFn, dims: int | None = None) -> Drawn:
    dims = dims or draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = draw(st.integers(1, 2))
    padding_kind = draw(st.sampled_from(["int", "same", "valid"]))
    stride = 1 if padding_kind == "same" else draw(st.integers(1, 3))
    padding: Any = padding_kind if padding_kind != "int" else draw(st.integers(0, 2))
    pad = padding if isinstance(padding, int) else 0
    sizes = tuple(
        max(1, dilation * (k - 1) + 1 - 2 * pad) + draw(st.integers(0, 4)) for k in kernel
    )
    layer = layers.Conv(
        dims,
        in_channels,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        draw(st.booleans()),
    )
    return layer, (draw(st.integers(1, 2)), in_channels, *sizes)


@st.composite
def conv_transpose_layers(draw: st.DrawFn) -> Drawn:
    dims = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    in_channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    output_padding = draw(st.integers(0, max(s, d) - 1))
    sizes = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    largest = min(((n - 1) * s + d * (k - 1) + output_padding) // 2 for n in sizes)
    padding = draw(st.integers(0, min(2, largest)))
    layer = layers.ConvTranspose(
        dims,
        in_channels,
        out_channels,
        k,
        s,
        padding,
        output_padding,
        groups,
        draw(st.booleans()),
        d,
    )
    return layer, (draw(st.integers(1, 2)), in_channels, *sizes)


OTHER_KINDS = ("linear", "pool", "batchnorm", "separable", "residual", "patch")


@st.composite
def other_layers(draw: st.DrawFn, kind: str) -> Drawn:
    batch = draw(st.integers(1, 2))
    if kind == "linear":
        layer: Any = layers.Linear(
            draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.booleans())
        )
        return layer, (batch, draw(st.integers(1, 3)), layer.in_features)
    if kind == "pool":
        dims, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        pool_kind = draw(st.sampled_from(["max", "avg"]))
        dilation = draw(st.integers(1, 2)) if pool_kind == "max" else 1
        padding = draw(st.integers(0, k // 2))
        layer = layers.Pool(
            pool_kind,
            dims,
            k,
            draw(st.one_of(st.none(), st.integers(1, 3))),
            padding,
            dilation,
            draw(st.booleans()),
        )
        smallest = max(1, dilation * (k - 1) + 1 - 2 * padding)
        if pool_kind == "avg":  # torch's avg_pool3d wants input >= kernel (a baselined quirk)
            smallest = max(smallest, k)
        size = smallest + draw(st.integers(0, 4))
        return layer, (batch, 2, *([size] * dims))
    if kind == "batchnorm":
        channels = draw(st.integers(1, 4))
        layer = layers.BatchNorm(channels, draw(st.booleans()))
        return layer, (batch + 1, channels, *([3] * draw(st.integers(1, 3))))
    if kind == "separable":
        dims, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        layer = layers.depthwise_separable(
            dims,
            channels,
            draw(st.integers(1, 4)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 2)),
            1,
            "same",
            draw(st.booleans()),
        )
        return layer, (batch, channels, *([4] * dims))
    if kind == "residual":
        channels, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        out = draw(st.integers(1, 3))
        return layers.basic_residual_block(channels, out, stride), (batch + 1, channels, 6, 5)
    patch = draw(st.integers(1, 4))
    channels = draw(st.integers(1, 3))
    layer = layers.patch_embedding(channels, draw(st.integers(1, 8)), patch)
    sizes = [patch * draw(st.integers(1, 3)) + draw(st.integers(0, patch - 1)) for _ in range(2)]
    return layer, (batch, channels, *sizes)


# every kind of layer equally often
any_layer = st.one_of(
    conv_layers(), conv_transpose_layers(), *(other_layers(kind) for kind in OTHER_KINDS)
)


@st.composite
def receptive_stacks(draw: st.DrawFn) -> tuple[list[Any], int]:
    """A stack of convolutions and average pools (1 or 2 channels), maybe a residual block;
    returns the layers and the spatial rank."""
    dims = draw(st.integers(1, 2))
    stack: list[Any] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "avg", "residual"]))
        if kind == "avg":
            k = draw(st.integers(1, 3))
            stack.append(
                layers.Pool("avg", dims, k, draw(st.integers(1, 2)), draw(st.integers(0, k // 2)))
            )
        elif kind == "residual":
            k = 2 * draw(st.integers(0, 1)) + 1  # odd: 'same'-shaped body, identity shortcut
            body = layers.Sequential(
                (
                    layers.Conv(dims, 1, 1, k, 1, k // 2, 1, 1, False),
                    layers.Conv(dims, 1, 1, k, 1, k // 2, 1, 1, False),
                )
            )
            stack.append(layers.Residual(body))
        else:
            stack.append(
                layers.Conv(
                    dims,
                    1,
                    1,
                    draw(st.integers(1, 4)),
                    draw(st.integers(1, 2)),
                    draw(st.integers(0, 2)),
                    draw(st.integers(1, 2)),
                    1,
                    False,
                )
            )
    return stack, dims
