"""Image classifiers written from their papers with torch.nn, for ``python -m conformance
model conformance.model.zoo:resnet50`` (torchvision's wheels are not usable here, and no
weights are downloaded: every factory returns a freshly initialized network).

Their parameter counts equal the published ones (the torchvision model zoo's, for the
ImageNet heads of 1000 classes): ResNet-18 11,689,512; ResNet-50 25,557,032; MobileNetV2
3,504,872; VGG-11 132,863,336. tests/model/test_zoo.py asserts them by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

IMAGENET_CLASSES = 1000


def _he_init(model: nn.Module) -> nn.Module:
    """He et al. (2015) normal initialization (fan-out, ReLU gain) of every convolution, as
    the ResNet paper prescribes; batch norms at weight 1, bias 0 (torch's default)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al. 2016, fig. 2 left): two 3x3 convolutions with batch
    norm, plus the identity, or a strided 1x1 projection with batch norm where the shape
    changes (option B)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (fig. 5 right): 1x1 reduce, 3x3, 1x1 expand by 4, each with
    batch norm; the stride sits on the 3x3 convolution (the "v1.5" placement the torchvision
    models use; the parameter count does not depend on it)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + shortcut)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class ResNet(nn.Module):
    """He et al. (2016), table 1: a 7x7/2 stem with batch norm and ReLU, a 3x3/2 max pool,
    four stages of widths 64, 128, 256, 512 (stride 2 at the start of stages 2-4), global
    average pooling and one fully connected layer."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], depths: Sequence[int], classes: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        stages = []
        for index, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(channels, width, stride))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)
        _he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(classes: int = IMAGENET_CLASSES) -> ResNet:
    """ResNet-18: basic blocks, two per stage (11,689,512 parameters with 1000 classes)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), classes)


def resnet50(classes: int = IMAGENET_CLASSES) -> ResNet:
    """ResNet-50: bottleneck blocks, 3, 4, 6, 3 per stage (25,557,032 parameters)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), classes)


# VGG configuration A (Simonyan and Zisserman 2015, table 1): 3x3 convolutions, "M" a 2x2/2
# max pool
VGG11_LAYERS: tuple[int | str, ...] = (
    64,
    "M",
    128,
    "M",
    256,
    256,
    "M",
    512,
    512,
    "M",
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """VGG: stacked 3x3 convolutions (padding 1) with ReLU and max pooling, then three fully
    connected layers of 4096, 4096 and the classes, with dropout. The 7x7 adaptive average
    pool before them (torchvision's) makes any input of 32 px or more reach them at 7x7."""

    def __init__(self, layers: Sequence[int | str], classes: int) -> None:
        super().__init__()
        features: list[nn.Module] = []
        channels = 3
        for layer in layers:
            if layer == "M":
                features.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(layer, int)
                features += [nn.Conv2d(channels, layer, 3, padding=1), nn.ReLU()]
                channels = layer
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, classes),
        )
        _he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def vgg11(classes: int = IMAGENET_CLASSES) -> VGG:
    """VGG-11, configuration A (132,863,336 parameters with 1000 classes)."""
    return VGG(VGG11_LAYERS, classes)


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(),
    ]


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck (Sandler et al. 2018, table 1): a 1x1 expansion by t with
    ReLU6 (absent when t = 1), a 3x3 depthwise convolution of stride s with ReLU6, and a
    linear 1x1 projection; the input is added back when the stride is 1 and the channels
    agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn_relu6(in_channels, hidden, 1)
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# (expansion t, channels c, repeats n, first stride s): Sandler et al. 2018, table 2
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1: a 3x3/2 convolution to 32 channels, the seven stages of
    inverted residuals, a 1x1 convolution to 1280, global average pooling, dropout 0.2 and
    the classifier."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = list(_conv_bn_relu6(3, 32, 3, 2))
        channels = 32
        for expansion, width, repeats, stride in MOBILENET_V2_STAGES:
            for position in range(repeats):
                layers.append(
                    InvertedResidual(channels, width, stride if position == 0 else 1, expansion)
                )
                channels = width
        layers += _conv_bn_relu6(channels, 1280, 1)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))
        _he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def mobilenet_v2(classes: int = IMAGENET_CLASSES) -> MobileNetV2:
    """MobileNetV2, width multiplier 1 (3,504,872 parameters with 1000 classes)."""
    return MobileNetV2(classes)
