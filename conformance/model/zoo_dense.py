"""Dense-prediction and video networks written from their papers with torch.nn: a dilated
segmentation net, a U-Net with transposed convolutions and a small 3-d convolution net, for
``python -m conformance model conformance.model.zoo_dense:unet --input-shape 1,1,64,64``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from conformance.model.zoo import _he_init

PASCAL_VOC_CLASSES = 21
UCF101_CLASSES = 101


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


# Yu and Koltun, "Multi-scale context aggregation by dilated convolutions" (ICLR 2016),
# table 1: the basic context module's 3x3 layers and their dilations
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


class DilatedSegmentation(nn.Module):
    """A front end of three stride-2 stages (3x3 convolutions with batch norm and ReLU, to an
    output stride of 8), Yu and Koltun's basic context module (3x3 convolutions with ReLU,
    dilated 1, 1, 2, 4, 8, 16, 1: the receptive field grows exponentially while the
    resolution stays), a 1x1 classifier, and a learned x8 upsampling back to the input size
    (a transposed convolution of kernel 16, stride 8, padding 4, as in FCN, Long et al.
    2015). Input sizes divisible by 8."""

    def __init__(self, classes: int, width: int) -> None:
        super().__init__()
        front: list[nn.Module] = []
        channels = 3
        for stage_width in (width // 4, width // 2, width):
            front += _conv_bn_relu(channels, stage_width, stride=2)
            front += _conv_bn_relu(stage_width, stage_width)
            channels = stage_width
        self.front = nn.Sequential(*front)
        context: list[nn.Module] = []
        for dilation in CONTEXT_DILATIONS:
            context += [nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
        self.context = nn.Sequential(*context)
        self.classifier = nn.Conv2d(width, classes, 1)
        self.upsample = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, bias=False)
        _he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.classifier(self.context(self.front(x))))


def dilated_segmentation(
    classes: int = PASCAL_VOC_CLASSES, width: int = 128
) -> DilatedSegmentation:
    """The dilated segmentation net for PASCAL VOC's 21 classes."""
    return DilatedSegmentation(classes, width)


class DoubleConv(nn.Module):
    """Two 3x3 convolutions with ReLU (U-Net's unit; padded here, so that the skip
    connections need no cropping)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))


class UNet(nn.Module):
    """Ronneberger, Fischer and Brox (2015), fig. 1: a contracting path of double 3x3
    convolutions and 2x2 max pools doubling the channels from 64 to 1024, an expanding path
    of 2x2 up-convolutions (transposed convolutions of stride 2) halving them, each
    concatenated with the contracting path's feature map of the same size, and a 1x1
    convolution to the classes. Input sizes divisible by 16."""

    def __init__(self, in_channels: int, classes: int, width: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(5)]
        self.down = nn.ModuleList()
        channels = in_channels
        for level_width in widths:
            self.down.append(DoubleConv(channels, level_width))
            channels = level_width
        self.pool = nn.ModuleList(nn.MaxPool2d(2) for _ in widths[:-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level_width in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(channels, level_width, 2, stride=2))
            self.merge.append(DoubleConv(2 * level_width, level_width))
            channels = level_width
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for level, double in enumerate(self.down):
            x = double(x)
            if level < len(self.pool):
                skips.append(x)
                x = self.pool[level](x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


def unet(in_channels: int = 1, classes: int = 2, width: int = 64) -> UNet:
    """The U-Net of the paper's cell segmentation: one input channel, two classes."""
    return UNet(in_channels, classes, width)


class C3DSmall(nn.Module):
    """A small 3-d convolution net after C3D (Tran et al. 2015): 3x3x3 convolutions with
    batch norm and ReLU, a first 1x2x2 max pool that keeps the time axis, then 2x2x2 pools,
    global average pooling and a classifier (UCF101's 101 actions). Input (N, 3, T, H, W)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width, pool in ((32, (1, 2, 2)), (64, (2, 2, 2)), (128, (2, 2, 2))):
            layers += [
                nn.Conv3d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(),
                nn.MaxPool3d(pool),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(channels, classes)
        _he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))


def c3d_small(classes: int = UCF101_CLASSES) -> C3DSmall:
    """The small 3-d convolution net, for clips of 3 x T x H x W (C3D: 16 x 112 x 112)."""
    return C3DSmall(classes)
