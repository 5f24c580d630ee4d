"""Catalogue entries of the blocks: patch embedding, depthwise-separable convolution,
ResNet's residual block, and the fusion chains conv_bn_relu, conv_max_pool and
conv_transpose_conv.

patch_embedding is one matrix product, so the sum-of-products bound applies as it is. The two
blocks that chain ops have composed bounds (conformance.judge.block_bounds), which carry
each intermediate's storage in the tested dtype: they are judged in every dtype. conv_bn_relu's
bound (conformance.judge.fused_bounds) covers both torch's three stored ops and an inference
engine's fold of batch norm into the convolution; conv_max_pool's
(conformance.judge.conv_pool_bounds) the convolution's error through the windows' maxima, and
in the backward the windows whose maximum the convolution's error leaves open;
conv_transpose_conv's (conformance.judge.transpose_chain_bounds) the two convolutions composed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.families.conv import _common_regions
from conformance.catalogue.spec import OpSpec, Region, input_array, per_dim
from conformance.catalogue.strategies.blocks import (
    patch_examples,
    residual_examples,
    separable_examples,
)
from conformance.catalogue.strategies.fused import (
    conv_bn_relu_examples,
    conv_max_pool_examples,
    conv_transpose_conv_examples,
)
from conformance.catalogue.strategies.knobs import omitting_defaults
from conformance.judge.block_bounds import residual_tolerances, separable_tolerances
from conformance.judge.conv_pool_bounds import conv_max_pool_tolerances
from conformance.judge.fused_bounds import conv_bn_relu_tolerances, knobs_of
from conformance.judge.transpose_chain_bounds import conv_transpose_conv_tolerances


def _patch_terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
    weight = example.arrays["weight"]
    assert weight is not None
    per_position = math.prod(output_shape[-2:]) * (output_shape[0] if len(output_shape) == 4 else 1)
    return {
        "output": math.prod(weight.shape[1:]) + (example.arrays["bias"] is not None),
        "grad_input": weight.shape[0],
        "grad_weight": per_position,
        "grad_bias": per_position,
    }


def _patch_size(example: Example) -> int:
    weight = example.arrays["weight"]
    assert weight is not None
    return int(weight.shape[-1])


def _patch_regions() -> dict[str, Region]:
    def remainder(e: Example) -> bool:
        return any(size % _patch_size(e) for size in input_array(e).shape[-2:])

    return {
        "unbatched": lambda e: input_array(e).ndim == 3,
        "remainder dropped": remainder,
        "patch 1 (pointwise)": lambda e: bool(_patch_size(e) == 1),
        "bias": lambda e: e.arrays["bias"] is not None,
    }


def _separable_regions() -> dict[str, Region]:
    def multiplier(e: Example) -> bool:
        weight = e.arrays["depthwise_weight"]
        assert weight is not None
        return bool(weight.shape[0] > input_array(e).shape[-3])

    return {
        "unbatched": lambda e: input_array(e).ndim == 3,
        "channel multiplier > 1": multiplier,
        "padding='same'": lambda e: e.config["padding"] == "same",
        "stride > 1": lambda e: e.config["stride"] > 1,
        "dilation > 1": lambda e: e.config["dilation"] > 1,
        "both biases": lambda e: (
            e.arrays["depthwise_bias"] is not None and e.arrays["pointwise_bias"] is not None
        ),
    }


RESIDUAL_ARRAYS = (
    "input",
    "conv1_weight",
    "bn1_weight",
    "bn1_bias",
    "conv2_weight",
    "bn2_weight",
    "bn2_bias",
    "shortcut_weight",
    "shortcut_bn_weight",
    "shortcut_bn_bias",
)


def _residual_regions() -> dict[str, Region]:
    return {
        "identity shortcut": lambda e: e.arrays["shortcut_weight"] is None,
        "projection shortcut": lambda e: e.arrays["shortcut_weight"] is not None,
        "stride 2": lambda e: e.config["stride"] == 2,
        "large values (wide)": lambda e: e.values == "wide",
    }


CONV_BN_RELU_ARRAYS = (
    "input",
    "weight",
    "bias",
    "running_mean",
    "running_var",
    "bn_weight",
    "bn_bias",
)


def _calibrated(example: Example) -> bool:
    """running_mean is the batch's own channel mean (strategies.fused): c - mean cancels."""
    x, mean, weight = input_array(example), example.arrays["running_mean"], example.arrays["weight"]
    assert mean is not None and weight is not None
    batched = x if x.ndim == 4 else x[np.newaxis]
    conv = reference.conv2d(batched, weight, example.arrays["bias"], *knobs_of(example.config))
    # the strategy's calibrated mean is this same float64 mean (summed perhaps in another
    # order: 1e-12 covers that rounding); a drawn running_mean differs from it by O(1)
    return bool(np.allclose(conv.mean(axis=(0, 2, 3)), mean, rtol=1e-12, atol=0.0))


def _conv_bn_relu_regions() -> dict[str, Region]:
    def padding(e: Example) -> Any:
        return e.config["padding"]

    return {
        **_common_regions(),
        "padding='same'": lambda e: padding(e) == "same",
        "padding='valid'": lambda e: padding(e) == "valid",
        "padding > 0 (ints)": lambda e: (
            not isinstance(padding(e), str) and max(per_dim(padding(e), 2)) > 0
        ),
        "no bn_weight (gamma 1)": lambda e: e.arrays["bn_weight"] is None,
        "bn_weight and bn_bias": lambda e: (
            e.arrays["bn_weight"] is not None and e.arrays["bn_bias"] is not None
        ),
        # torch's batch_norm double backward fails there (reports/findings/torch/
        # batch-norm-double-backward-bias-without-weight.md)
        "bn_bias without bn_weight": lambda e: (
            e.arrays["bn_weight"] is None and e.arrays["bn_bias"] is not None
        ),
        "statistics of the batch (c - mean cancels)": _calibrated,
        "large values (wide)": lambda e: e.values == "wide",
    }


def _conv_max_pool_regions() -> dict[str, Region]:
    def pool(name: str, default: Any) -> Any:
        return lambda e: per_dim(e.config.get(name, default), 2)

    kernel, padding, dilation = (
        pool("pool_kernel_size", 2),
        pool("pool_padding", 0),
        pool("pool_dilation", 1),
    )

    def stride(e: Example) -> tuple[int, ...]:
        given = e.config.get("pool_stride")
        return kernel(e) if given is None else per_dim(given, 2)

    return {
        **_common_regions(),
        "padding='same'": lambda e: e.config["padding"] == "same",
        "pool windows overlap (pool_stride < kernel)": lambda e: any(
            s < k for s, k in zip(stride(e), kernel(e), strict=True)
        ),
        "pool_stride None (the kernel's)": lambda e: e.config.get("pool_stride") is None,
        "pool_padding > 0": lambda e: max(padding(e)) > 0,
        "pool_dilation > 1": lambda e: max(dilation(e)) > 1,
        "ceil_mode": lambda e: bool(e.config.get("ceil_mode", False)),
        "ResNet's stem pool (3, stride 2, padding 1)": lambda e: (
            kernel(e) == (3, 3) and stride(e) == (2, 2) and padding(e) == (1, 1)
        ),
        # small integers make exact ties among a window's convolution outputs
        "integer values (tied maxima)": lambda e: e.values == "integers",
        "large values (wide)": lambda e: e.values == "wide",
    }


TRANSPOSE_CONV_ARRAYS = ("input", "transpose_weight", "conv_weight", "transpose_bias", "conv_bias")


def _conv_transpose_conv_regions() -> dict[str, Region]:
    def knob(name: str, default: Any) -> Callable[[Example], tuple[Any, ...]]:
        return lambda e: per_dim(e.config.get(name, default), 2)

    stride, dilation, extra = knob("stride", 1), knob("dilation", 1), knob("output_padding", 0)

    def conv_padding(e: Example) -> Any:
        return e.config.get("conv_padding", 0)

    return {
        "stride > 1 (upsampling)": lambda e: max(stride(e)) > 1,
        "dilation > 1": lambda e: max(dilation(e)) > 1,
        "output_padding > 0": lambda e: max(extra(e)) > 0,
        "padding > 0": lambda e: max(knob("padding", 0)(e)) > 0,
        "conv_padding='same'": lambda e: conv_padding(e) == "same",
        "conv_padding='valid'": lambda e: conv_padding(e) == "valid",
        "conv_padding > 0 (ints)": lambda e: (
            not isinstance(conv_padding(e), str) and max(per_dim(conv_padding(e), 2)) > 0
        ),
        "unbatched": lambda e: input_array(e).ndim == 3,
        "both biases": lambda e: (
            e.arrays["transpose_bias"] is not None and e.arrays["conv_bias"] is not None
        ),
        "large values (wide)": lambda e: e.values == "wide",
    }


SPECS: tuple[OpSpec, ...] = (
    OpSpec(
        name="patch_embedding",
        family="blocks",
        reference=reference.patch_embedding,
        reference_backward=reference.patch_embedding_backward,
        array_args=("input", "weight", "bias"),
        differentiable=("input", "weight", "bias"),
        examples=omitting_defaults(patch_examples, reference.patch_embedding),
        terms=_patch_terms,
        coverage=_patch_regions(),
    ),
    OpSpec(
        name="depthwise_separable_conv",
        family="blocks",
        reference=reference.depthwise_separable_conv,
        reference_backward=reference.depthwise_separable_conv_backward,
        array_args=(
            "input",
            "depthwise_weight",
            "pointwise_weight",
            "depthwise_bias",
            "pointwise_bias",
        ),
        differentiable=(
            "input",
            "depthwise_weight",
            "pointwise_weight",
            "depthwise_bias",
            "pointwise_bias",
        ),
        examples=omitting_defaults(separable_examples, reference.depthwise_separable_conv),
        terms=lambda example, shape: {},
        coverage=_separable_regions(),
        tolerances=separable_tolerances,
    ),
    OpSpec(
        name="residual_block",
        family="blocks",
        reference=reference.residual_block,
        reference_backward=reference.residual_block_backward,
        array_args=RESIDUAL_ARRAYS,
        differentiable=RESIDUAL_ARRAYS,
        examples=omitting_defaults(residual_examples, reference.residual_block),
        terms=lambda example, shape: {},
        coverage=_residual_regions(),
        tolerances=residual_tolerances,
    ),
    OpSpec(
        name="conv_bn_relu",
        family="blocks",
        reference=reference.conv_bn_relu,
        reference_backward=reference.conv_bn_relu_backward,
        array_args=CONV_BN_RELU_ARRAYS,
        differentiable=("input", "weight", "bias", "bn_weight", "bn_bias"),
        examples=omitting_defaults(conv_bn_relu_examples, reference.conv_bn_relu),
        terms=lambda example, shape: {},
        coverage=_conv_bn_relu_regions(),
        tolerances=conv_bn_relu_tolerances,
    ),
    OpSpec(
        name="conv_max_pool",
        family="blocks",
        reference=reference.conv_max_pool,
        reference_backward=reference.conv_max_pool_backward,
        array_args=("input", "weight", "bias"),
        differentiable=("input", "weight", "bias"),
        examples=omitting_defaults(conv_max_pool_examples, reference.conv_max_pool),
        terms=lambda example, shape: {},
        coverage=_conv_max_pool_regions(),
        tolerances=conv_max_pool_tolerances,
    ),
    OpSpec(
        name="conv_transpose_conv",
        family="blocks",
        reference=reference.conv_transpose_conv,
        reference_backward=reference.conv_transpose_conv_backward,
        array_args=TRANSPOSE_CONV_ARRAYS,
        differentiable=TRANSPOSE_CONV_ARRAYS,
        examples=omitting_defaults(conv_transpose_conv_examples, reference.conv_transpose_conv),
        terms=lambda example, shape: {},
        coverage=_conv_transpose_conv_regions(),
        tolerances=conv_transpose_conv_tolerances,
    ),
)
