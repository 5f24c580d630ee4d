"""The shipped factories, narrowed where they take a width, so that tests/model runs every
one of them in seconds (the full widths: the README's manual runs and the benchmark)."""

from __future__ import annotations

from functools import partial

from conformance.model import zoo, zoo_dense

resnet18 = zoo.resnet18
resnet50 = zoo.resnet50
mobilenet_v2 = zoo.mobilenet_v2
vgg11 = zoo.vgg11
dilated_segmentation = partial(zoo_dense.dilated_segmentation, width=32)
unet = partial(zoo_dense.unet, width=8)
c3d_small = zoo_dense.c3d_small
