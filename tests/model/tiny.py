"""Tiny networks with values known by hand, for tests/model: each factory builds a network
whose statistics, counts or fields follow from its construction."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def dead_channel() -> nn.Module:
    """A 1x1 convolution with weight 0 and biases -1 and 2, then a ReLU: channel 0 is -1
    everywhere (dead after the ReLU), channel 1 is 2 everywhere."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-1.0, 2.0]))
    return nn.Sequential(conv, nn.ReLU())


def standard_and_depthwise() -> nn.Module:
    """A standard 3x3 convolution, 32 to 64 channels without bias, then a depthwise 3x3 one
    (groups 64), both padded by 1."""
    return nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False),
    )


class Cross(nn.Module):
    """A residual sum of a 1x3 and a 3x1 convolution: each output sees a cross of five
    inputs, a union of two boxes that no box (product of per-axis ranges) equals."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(1, 1, (1, 3), padding=(0, 1))
        self.tall = nn.Conv2d(1, 1, (3, 1), padding=(1, 0))

    def forward(self, x: Tensor) -> Tensor:
        return self.wide(x) + self.tall(x)


class Tricky(nn.Module):
    """Every field rule at once: reflect padding, a dilated convolution on the input (holes
    in its field), a ceil-mode max pool, a transposed convolution with output padding, a
    residual sum, a concatenation, nearest upsampling and adaptive pooling with unequal windows
    (on a 1 x 2 x 14 x 14 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.reflect = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
        self.dilated = nn.Conv2d(3, 3, 3, padding=2, dilation=3)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.up = nn.ConvTranspose2d(3, 3, 3, stride=2, padding=2, output_padding=1)
        self.nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.adaptive = nn.AdaptiveAvgPool2d((5, 3))

    def forward(self, x: Tensor) -> Tensor:
        y = self.dilated(self.reflect(x))  # 12 x 12
        z = self.up(self.pool(y))  # 7 x 7, then 12 x 12 again
        return self.adaptive(self.nearest(torch.cat([z + y, y], dim=1)))


class Unknown(nn.Module):
    """Layers the catalogue has no op for: GELU, bilinear upsampling, a squeeze-and-excitation
    product, self-attention over the positions; between two convolutions it does know."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gelu = nn.GELU()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.up(self.gelu(self.conv(x)))
        y = y * torch.sigmoid(self.squeeze(y))
        n, c, h, w = y.shape
        tokens = y.flatten(2).transpose(1, 2)
        attended, _ = self.attention(tokens, tokens, tokens)
        return self.head(attended.transpose(1, 2).reshape(n, c, h, w))
