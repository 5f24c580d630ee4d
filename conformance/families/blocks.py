"""Catalogue entries of the blocks: patch embedding and depthwise-separable convolution.

patch_embedding is one matrix product, so the sum-of-products bound applies as it is. The
separable block is two convolutions in a row; its bound composes theirs: the depthwise
result h carries its own bound e_h, which the pointwise convolution carries over as
pointwise(e_h, |W_p|), plus the pointwise sum's own bound on magnitude pointwise(|h| + e_h,
|W_p|). The gradients chain the same way through each convolution's adjoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import reference
from conformance.error_model import ORACLE_ROUNDOFF, UNIT_ROUNDOFF, Tolerance, gamma
from conformance.example import Example
from conformance.families.normalization import batch_norm_carry, batch_norm_own_bound
from conformance.spec import OpSpec, Region, ToleranceContext, input_array
from conformance.strategies.blocks import patch_examples, residual_examples, separable_examples


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


def _abs(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.abs(array)


def _spatial_sum(array: np.ndarray) -> np.ndarray:
    """Sum over batch and space, per channel (batched or unbatched)."""
    return array.sum(axis=(0, 2, 3) if array.ndim == 4 else (1, 2))


def separable_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """The composed bound (module docstring). With g(k) = gamma_k (implementation plus
    oracle) and T = batch * output positions, the terms per sum are: depthwise output
    kh*kw + 1, pointwise output hidden + 1, grad_hidden out_channels, grad_input
    multiplier * kh * kw, every weight and bias gradient T. Errors of h and grad_hidden are
    carried through the next convolution with absolute weights. The scale replaces g(k)
    by u."""
    inputs, config = context.inputs, dict(context.example.config)
    x, w_d, w_p = inputs["input"], inputs["depthwise_weight"], inputs["pointwise_weight"]
    b_d, b_p = inputs["depthwise_bias"], inputs["pointwise_bias"]
    assert x is not None and w_d is not None and w_p is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    u_out = UNIT_ROUNDOFF[context.dtype]
    knobs = (config["stride"], config["padding"], config["dilation"], x.shape[-3])
    h = reference.conv2d(x, w_d, b_d, *knobs)
    positions = h.size // h.shape[-3]  # T
    n_d, n_p = math.prod(w_d.shape[2:]) + 1, w_p.shape[1] + 1
    reach = w_d.shape[0] // x.shape[-3] * math.prod(w_d.shape[2:])
    a_x, a_h, a_wd, a_wp = np.abs(x), np.abs(h), np.abs(w_d), np.abs(w_p)

    def bounds(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        e_h = g(n_d) * reference.conv2d(a_x, a_wd, _abs(b_d), *knobs) + u * a_h
        if context.direction == "forward":
            carried = reference.conv2d(e_h, a_wp)
            own = g(n_p) * reference.conv2d(a_h + e_h, a_wp, _abs(b_p))
            return {"output": carried + own}
        grad = context.grad_output
        assert grad is not None
        a_g = np.abs(grad)
        grad_h = reference.conv2d_backward(grad, h, w_p)[0]
        a_gh = np.abs(grad_h)
        e_gh = g(w_p.shape[0]) * reference.conv2d_backward(a_g, a_h, a_wp)[0] + u * a_gh
        through = reference.conv2d_backward(e_gh, a_x, a_wd, None, *knobs)
        summed = reference.conv2d_backward(a_gh, a_x, a_wd, None, *knobs)
        pointwise_carried = reference.conv2d_backward(a_g, e_h, a_wp)[1]
        pointwise_own = reference.conv2d_backward(a_g, a_h, a_wp)[1]
        return {
            "grad_input": through[0] + g(reach) * summed[0],
            "grad_depthwise_weight": through[1] + g(positions) * summed[1],
            "grad_pointwise_weight": pointwise_carried + g(positions) * pointwise_own,
            "grad_depthwise_bias": _spatial_sum(e_gh) + g(positions) * _spatial_sum(a_gh),
            "grad_pointwise_bias": g(positions) * _spatial_sum(a_g),
        }

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    strict, scale = bounds(proven), bounds(lambda k: u)
    tolerances = {}
    for name, bound in strict.items():
        want = context.expected.get(name)
        if want is None:
            continue
        final = u_out * np.abs(want)  # rounding the result to the output dtype
        tolerances[name] = Tolerance(bound + final, scale[name] + final, n_d + n_p)
    return tolerances


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


def residual_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """Forward: first-order propagation through the block. Each convolution carries its
    input's error as conv(delta, |W|) and adds its own gamma_n * conv(|x| + delta, |W|);
    batch norm carries it as batch_norm_carry and adds its own bound; ReLU is 1-Lipschitz;
    the sum adds u |z|. The scale replaces each gamma_k by u."""
    inputs, config = context.inputs, context.example.config
    x = inputs["input"]
    assert x is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    u_out = UNIT_ROUNDOFF[context.dtype]
    stride, eps = config["stride"], config["eps"]

    def conv(
        value: np.ndarray,
        weight: np.ndarray | None,
        step: int,
        padding: int,
        delta: np.ndarray,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, np.ndarray]:
        assert weight is not None
        out = reference.conv2d(value, weight, None, step, padding)
        reach = reference.conv2d(np.abs(value) + delta, np.abs(weight), None, step, padding)
        carried = reference.conv2d(delta, np.abs(weight), None, step, padding)
        return out, carried + g(math.prod(weight.shape[1:])) * reach + u * np.abs(out)

    def norm(
        value: np.ndarray,
        delta: np.ndarray,
        weight_name: str,
        bias_name: str,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, np.ndarray]:
        weight, bias = inputs[weight_name], inputs[bias_name]
        own, r, x_hat = batch_norm_own_bound(value, weight, bias, eps, g, u)
        out = reference.batch_norm(value, None, None, weight, bias, True, 0.0, eps)
        return out, batch_norm_carry(delta, weight, r, x_hat) + own

    def bound(g: Callable[[int], float]) -> np.ndarray:
        none = np.zeros_like(x)
        a1, e_a1 = conv(x, inputs["conv1_weight"], stride, 1, none, g)
        b1, e_b1 = norm(a1, e_a1, "bn1_weight", "bn1_bias", g)
        hidden = np.maximum(b1, 0.0)
        a2, e_a2 = conv(hidden, inputs["conv2_weight"], 1, 1, e_b1, g)
        body, e_body = norm(a2, e_a2, "bn2_weight", "bn2_bias", g)
        if inputs["shortcut_weight"] is None:
            skip, e_skip = x, np.zeros_like(x)
        else:
            a_s, e_as = conv(x, inputs["shortcut_weight"], stride, 0, none, g)
            skip, e_skip = norm(a_s, e_as, "shortcut_bn_weight", "shortcut_bn_bias", g)
        return e_body + e_skip + u * np.abs(body + skip)

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    y = context.expected["output"]
    assert y is not None
    final = u_out * np.abs(y)
    return {"output": Tolerance(bound(proven) + final, bound(lambda k: u) + final, 0)}


def _residual_regions() -> dict[str, Region]:
    return {
        "identity shortcut": lambda e: e.arrays["shortcut_weight"] is None,
        "projection shortcut": lambda e: e.arrays["shortcut_weight"] is not None,
        "stride 2": lambda e: e.config["stride"] == 2,
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
        examples=patch_examples,
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
        examples=separable_examples,
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
        examples=residual_examples,
        terms=lambda example, shape: {},
        coverage=_residual_regions(),
        tolerances=residual_tolerances,
        # backward: the reference is checked by central differences and against torch in
        # float64 (tests/reference); a rigorous bound for the campaign would need gradient
        # errors carried back through batch norm and ReLU's kink, not yet derived
        directions=("forward",),
    ),
)
