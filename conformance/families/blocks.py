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
from typing import Any

import numpy as np

import reference
from conformance.error_model import ORACLE_ROUNDOFF, UNIT_ROUNDOFF, Tolerance, gamma
from conformance.example import Example
from conformance.families.normalization import (
    NormErrors,
    batch_norm_backward_own,
    batch_norm_carry,
    batch_norm_own_bound,
)
from conformance.spec import OpSpec, Region, ToleranceContext, input_array
from conformance.strategies.blocks import patch_examples, residual_examples, separable_examples

# The composed bounds carry each intermediate's storage rounding to first order, but not its
# underflow to subnormals or overflow past 65504, which in float16 and bfloat16 decide the
# result (an intermediate's inf - inf turns a representable gradient into NaN). Until they
# do, the blocks are judged in float64 and float32 only; their parts run in every dtype.
FULL_PRECISION = ("float64", "float32")


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
        # h and grad_h are stored in the tested dtype between the two convolutions
        e_h = g(n_d) * reference.conv2d(a_x, a_wd, _abs(b_d), *knobs) + u_out * a_h
        if context.direction == "forward":
            carried = reference.conv2d(e_h, a_wp)
            own = g(n_p) * reference.conv2d(a_h + e_h, a_wp, _abs(b_p))
            return {"output": carried + own}
        grad = context.grad_output
        assert grad is not None
        a_g = np.abs(grad)
        grad_h = reference.conv2d_backward(grad, h, w_p)[0]
        a_gh = np.abs(grad_h)
        e_gh = g(w_p.shape[0]) * reference.conv2d_backward(a_g, a_h, a_wp)[0] + u_out * a_gh
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
    """First-order propagation through the block, forward and backward.

    Forward: each convolution carries its input's error as conv(delta, |W|) and adds its own
    gamma_n * conv(|x| + delta, |W|); batch norm carries it as batch_norm_carry and adds its
    own bound; ReLU is 1-Lipschitz; the sum adds u |z|.
    Backward, through the same ops in reverse: a ReLU mask can flip only where its input is
    within its forward error, and there the gradient may be off by all of it; batch norm's
    backward carries a gradient error with the forward carry's structure, adds its own
    arithmetic's bound, and feels its saved input's error through x_hat (d x_hat = the carry
    with w = 1) and r (relative r * mean(|x_hat| delta)); each convolution's adjoint carries
    with |W|, its weight gradient pairs errors with the other operand's magnitude, and adds
    gamma_n of the magnitudes. The scale replaces each gamma_k by u."""
    inputs, config = context.inputs, context.example.config
    x = inputs["input"]
    assert x is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    u_out = UNIT_ROUNDOFF[context.dtype]
    stride, eps = config["stride"], config["eps"]
    projection = inputs["shortcut_weight"] is not None

    def weight(name: str) -> np.ndarray:
        array = inputs[name]
        assert array is not None
        return array

    def conv(
        value: np.ndarray,
        name: str,
        step: int,
        padding: int,
        delta: np.ndarray,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, np.ndarray]:
        w = weight(name)
        out = reference.conv2d(value, w, None, step, padding)
        reach = reference.conv2d(np.abs(value) + delta, np.abs(w), None, step, padding)
        carried = reference.conv2d(delta, np.abs(w), None, step, padding)
        return out, carried + g(math.prod(w.shape[1:])) * reach + u_out * np.abs(out)

    def norm(
        value: np.ndarray, delta: np.ndarray, prefix: str, g: Callable[[int], float]
    ) -> tuple[np.ndarray, np.ndarray, NormErrors]:
        w, b = inputs[f"{prefix}_weight"], inputs[f"{prefix}_bias"]
        own, errors = batch_norm_own_bound(value, w, b, eps, g, u)
        out = reference.batch_norm(value, None, None, w, b, True, 0.0, eps)
        return out, batch_norm_carry(delta, w, errors) + own + u_out * np.abs(out), errors

    def forward(g: Callable[[int], float]) -> dict[str, Any]:
        none = np.zeros_like(x)
        a1, e_a1 = conv(x, "conv1_weight", stride, 1, none, g)
        b1, e_b1, n1 = norm(a1, e_a1, "bn1", g)
        hidden = np.maximum(b1, 0.0)
        a2, e_a2 = conv(hidden, "conv2_weight", 1, 1, e_b1, g)
        body, e_body, n2 = norm(a2, e_a2, "bn2", g)
        values = dict(
            a1=a1,
            e_a1=e_a1,
            b1=b1,
            e_b1=e_b1,
            n1=n1,
            hidden=hidden,
            a2=a2,
            e_a2=e_a2,
            n2=n2,
            skip=x,
            e_skip=none,
        )
        if projection:
            a_s, e_as = conv(x, "shortcut_weight", stride, 0, none, g)
            skip, e_skip, n_s = norm(a_s, e_as, "shortcut_bn", g)
            values.update(a_s=a_s, e_as=e_as, n_s=n_s, skip=skip, e_skip=e_skip)
        z = body + values["skip"]
        values.update(z=z, e_z=e_body + values["e_skip"] + u_out * np.abs(z))
        return values

    def norm_backward(
        grad: np.ndarray,
        e_grad: np.ndarray,
        saved: np.ndarray,
        e_saved: np.ndarray,
        errors: NormErrors,
        prefix: str,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        w, b = inputs[f"{prefix}_weight"], inputs[f"{prefix}_bias"]
        axes, shape = (0, 2, 3), errors.r.shape
        exact = reference.batch_norm_backward(grad, saved, None, None, w, b, True, 0.0, eps)
        own = batch_norm_backward_own(grad, w, errors, True, g, u)
        d_x_hat = batch_norm_carry(e_saved, None, errors)  # the saved input's error in x_hat
        d_r = errors.r * (np.abs(errors.x_hat) * e_saved).mean(axis=axes).reshape(shape)
        gain = errors.r if w is None else errors.r * np.abs(w).reshape(shape)
        mixed = (grad * errors.x_hat).mean(axis=axes).reshape(shape)
        reach = (np.abs(grad) * d_x_hat).mean(axis=axes).reshape(shape)
        from_saved = gain * (d_x_hat * np.abs(mixed) + np.abs(errors.x_hat) * reach)
        from_saved = from_saved + np.abs(exact[0]) * d_r / errors.r
        bounds = {
            "grad_input": own["grad_input"]
            + batch_norm_carry(e_grad, w, errors)
            + from_saved
            + u_out * np.abs(exact[0]),
            "grad_weight": own["grad_weight"]
            + (e_grad * np.abs(errors.x_hat)).sum(axis=axes)
            + (np.abs(grad) * d_x_hat).sum(axis=axes),
            "grad_bias": own["grad_bias"] + e_grad.sum(axis=axes),
        }
        return exact[0], bounds

    def conv_backward(
        grad: np.ndarray,
        e_grad: np.ndarray,
        saved: np.ndarray,
        e_saved: np.ndarray,
        name: str,
        step: int,
        padding: int,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = weight(name)
        grad_input = reference.conv2d_backward(grad, saved, w, None, step, padding)[0]
        through = reference.conv2d_backward(e_grad, np.abs(saved), np.abs(w), None, step, padding)
        summed = reference.conv2d_backward(
            np.abs(grad), np.abs(saved), np.abs(w), None, step, padding
        )
        paired = reference.conv2d_backward(np.abs(grad), e_saved, np.abs(w), None, step, padding)
        positions = grad.size // grad.shape[1]
        e_input = through[0] + g(w.shape[0] * math.prod(w.shape[2:])) * summed[0]
        e_weight = through[1] + paired[1] + g(positions) * summed[1]
        return grad_input, e_input + u_out * np.abs(grad_input), e_weight

    def backward(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        v = forward(g)
        grad = context.grad_output
        assert grad is not None
        grad_z = np.where(v["z"] > 0, grad, 0.0)
        e_gz = np.where(np.abs(v["z"]) <= v["e_z"], np.abs(grad), 0.0)
        g_a2, e2 = norm_backward(grad_z, e_gz, v["a2"], v["e_a2"], v["n2"], "bn2", g)
        g_hidden, e_hidden, e_conv2 = conv_backward(
            g_a2, e2["grad_input"], v["hidden"], v["e_b1"], "conv2_weight", 1, 1, g
        )
        g_b1 = np.where(v["b1"] > 0, g_hidden, 0.0)
        e_gb1 = e_hidden + np.where(np.abs(v["b1"]) <= v["e_b1"], np.abs(g_hidden), 0.0)
        g_a1, e1 = norm_backward(g_b1, e_gb1, v["a1"], v["e_a1"], v["n1"], "bn1", g)
        g_x, e_x, e_conv1 = conv_backward(
            g_a1, e1["grad_input"], x, np.zeros_like(x), "conv1_weight", stride, 1, g
        )
        found = {
            "grad_conv1_weight": e_conv1,
            "grad_bn1_weight": e1["grad_weight"],
            "grad_bn1_bias": e1["grad_bias"],
            "grad_conv2_weight": e_conv2,
            "grad_bn2_weight": e2["grad_weight"],
            "grad_bn2_bias": e2["grad_bias"],
        }
        if projection:
            g_as, e_s = norm_backward(grad_z, e_gz, v["a_s"], v["e_as"], v["n_s"], "shortcut_bn", g)
            g_skip, e_skip, e_conv_s = conv_backward(
                g_as, e_s["grad_input"], x, np.zeros_like(x), "shortcut_weight", stride, 0, g
            )
            found.update(
                grad_shortcut_weight=e_conv_s,
                grad_shortcut_bn_weight=e_s["grad_weight"],
                grad_shortcut_bn_bias=e_s["grad_bias"],
            )
            found["grad_input"] = e_x + e_skip + u_out * np.abs(g_x + g_skip)
        else:
            found["grad_input"] = e_x + e_gz + u_out * np.abs(g_x + grad_z)
        return found

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    if context.direction == "forward":
        strict = {"output": forward(proven)["e_z"]}
        scale = {"output": forward(lambda k: u)["e_z"]}
    else:
        strict, scale = backward(proven), backward(lambda k: u)
    tolerances = {}
    for name, bound in strict.items():
        want = context.expected.get(name)
        if want is not None:
            final = u_out * np.abs(want)
            tolerances[name] = Tolerance(bound + final, scale[name] + final, 0)
    return tolerances


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
        dtypes=FULL_PRECISION,
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
        dtypes=FULL_PRECISION,
    ),
)
