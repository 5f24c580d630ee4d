"""The composed bounds of the two blocks that chain ops: depthwise-separable convolution and
ResNet's residual block.

The separable block is two convolutions in a row; its bound composes theirs: the depthwise
result h carries its own bound e_h, which the pointwise convolution carries over as
pointwise(e_h, |W_p|), plus the pointwise sum's own bound on magnitude pointwise(|h| + e_h,
|W_p|). The gradients chain the same way through each convolution's adjoints. The residual
block chains convolutions, batch norms (conformance.judge.batch_norm_bounds), ReLUs and a
sum the same way, first order in the carried errors.

In every dtype each intermediate is a tensor of the tested dtype, which torch stores before
the next op reads it: it rounds (u_out of its size), underflows (eta_out: in float16 a
hidden value of the wide kind is often subnormal, and a weight gradient summed from it over
positions then errs by eta_out times the magnitudes of the other factor - 2.5e-5 where
u_out |result| allowed 6e-8) and may overflow where the result would not (an output
gradient of 500 through a batch norm whose variance is below eps: 4e5 past float16's range, so
inf there and NaN downstream). conformance.judge.error_model.stored carries all three, with no claim
(an infinite error, inf and NaN read as unknown as they propagate) where a stored value may
pass the largest finite one; each sum's own error is conformance.judge.error_model.accumulated:
gamma_n of its magnitude, eta of its accumulation per term, no claim where it may overflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import reference
from conformance.catalogue.spec import ToleranceContext
from conformance.judge.batch_norm_bounds import (
    NormErrors,
    Precision,
    batch_norm_backward_own,
    batch_norm_carry,
    batch_norm_own_bound,
    carried_input_error,
    channel_mean,
)
from conformance.judge.error_model import (
    ORACLE_ROUNDOFF,
    UNIT_ROUNDOFF,
    Tolerance,
    accumulated,
    gamma,
    past_the_range,
    stored,
    unknown_as_infinite,
)
from reference.conv import Convolution


def _abs(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.abs(array)


def _with_bias(out: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """A convolution's output plus its bias per channel (batched or unbatched), as the
    convolution adds it."""
    if bias is not None:
        out += bias.reshape(-1, 1, 1)
    return out


def _spatial_sum(array: np.ndarray) -> np.ndarray:
    """Sum over batch and space, per channel (batched or unbatched)."""
    return array.sum(axis=(0, 2, 3) if array.ndim == 4 else (1, 2))


@dataclass(frozen=True)
class _Steps:
    """Two moves of a composed bound, for one context's dtypes: a sum's own error, and an
    intermediate's storage in the tested dtype between two ops."""

    accumulation: str
    dtype: str

    def own(self, magnitude: np.ndarray, n_terms: int, g: Callable[[int], float]) -> np.ndarray:
        """g(n) of the magnitude, eta per term, no claim where it may overflow (accumulated)."""
        return accumulated(magnitude, n_terms, g(n_terms), self.accumulation)

    def keep(self, value: np.ndarray, error: np.ndarray) -> np.ndarray:
        """Rounding, eta, no claim past the dtype's largest value (stored)."""
        return stored(value, unknown_as_infinite(error), self.dtype)


def gammas(accumulation_dtype: str) -> tuple[Callable[[int], float], Callable[[int], float]]:
    """A composed bound's two factors for a sum of k terms: gamma_k of the accumulation's unit
    roundoff plus the oracle's (the strict bound), and u alone (the scale)."""
    u = UNIT_ROUNDOFF[accumulation_dtype]

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    def unit(k: int) -> float:
        return u

    return proven, unit


def _finished(
    context: ToleranceContext,
    strict: dict[str, np.ndarray],
    scale: dict[str, np.ndarray],
    n_terms: int,
) -> dict[str, Tolerance]:
    """Each output's bound plus its rounding to the output dtype, and no claim where the bound
    reaches past the dtype's range (past_the_range). The rounding is u_out of the value torch
    rounds, which lies within |y| + bound of zero, not of |y|: a gradient that is exactly 0
    (every mask closed) but comes out 89.125 where a ReLU mask may flip rounds by 0.03 in
    float16, which u_out |y| = 0 would miss."""
    u_out = UNIT_ROUNDOFF[context.dtype]
    tolerances = {}
    for name, bound in strict.items():
        want = context.expected.get(name)
        if want is None:
            continue
        bound = unknown_as_infinite(bound)
        final = u_out * (np.abs(want) + bound)
        reached = past_the_range(bound + final, want, context.dtype)
        tolerances[name] = Tolerance(reached, scale[name] + u_out * np.abs(want), n_terms)
    return tolerances


def separable_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """The composed bound (module docstring). With g(k) = gamma_k (implementation plus
    oracle) and T = batch * output positions, the terms per sum are: depthwise output
    kh*kw + 1, pointwise output hidden + 1, grad_hidden out_channels, grad_input
    multiplier * kh * kw, every weight and bias gradient T. h and grad_hidden are stored in
    the tested dtype between the two convolutions (rounding, underflow, overflow: stored);
    their errors are carried through the next convolution with absolute weights and its
    magnitudes taken with them (|h| + e_h). The scale replaces g(k) by u."""
    inputs, config = context.inputs, dict(context.example.config)
    x, w_d, w_p = inputs["input"], inputs["depthwise_weight"], inputs["pointwise_weight"]
    b_d, b_p = inputs["depthwise_bias"], inputs["pointwise_bias"]
    assert x is not None and w_d is not None and w_p is not None
    steps = _Steps(context.accumulation_dtype, context.dtype)
    own, keep = steps.own, steps.keep
    knobs = (config["stride"], config["padding"], config["dilation"], x.shape[-3])
    h = reference.conv2d(x, w_d, b_d, *knobs)
    positions = h.size // h.shape[-3]  # T
    n_d, n_p = math.prod(w_d.shape[2:]) + 1, w_p.shape[1] + 1
    reach = w_d.shape[0] // x.shape[-3] * math.prod(w_d.shape[2:])
    a_x, a_h, a_wd, a_wp = np.abs(x), np.abs(h), np.abs(w_d), np.abs(w_p)
    depthwise = Convolution(x.shape, w_d.shape, *knobs)
    pointwise = Convolution(h.shape, w_p.shape)
    # the exact values and the magnitudes of exact operands, the same for the bound and the
    # scale; each pass adds what its errors carry (by linearity, as residual_tolerances)
    m_h = _with_bias(depthwise.forward(a_x, a_wd), _abs(b_d))
    shared: dict[str, Any] = {}
    if context.direction == "forward":
        shared["m_out"] = _with_bias(pointwise.forward(a_h, a_wp), _abs(b_p))
    else:
        grad = context.grad_output
        assert grad is not None
        a_g = np.abs(grad)
        grad_h = pointwise.grad_input(grad, w_p)
        a_gh = np.abs(grad_h)
        shared.update(grad_h=grad_h, a_gh=a_gh, a_g=a_g)
        shared.update(m_gh=pointwise.grad_input(a_g, a_wp))
        shared.update(m_pointwise=pointwise.grad_weight(a_g, a_h))
        shared.update(m_input=depthwise.grad_input(a_gh, a_wd))
        shared.update(m_depthwise=depthwise.grad_weight(a_gh, a_x))

    def bounds(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        e_h = keep(h, own(m_h, n_d, g))
        if context.direction == "forward":
            carried = pointwise.forward(e_h, a_wp)
            return {"output": unknown_as_infinite(carried) + own(shared["m_out"] + carried, n_p, g)}
        a_g, a_gh = shared["a_g"], shared["a_gh"]
        e_gh = keep(shared["grad_h"], own(shared["m_gh"], w_p.shape[0], g))
        through_input = depthwise.grad_input(e_gh, a_wd)
        through_weight = depthwise.grad_weight(e_gh, a_x)
        carried = pointwise.grad_weight(a_g, e_h)
        return {
            "grad_input": unknown_as_infinite(through_input)
            + own(shared["m_input"] + through_input, reach, g),
            "grad_depthwise_weight": unknown_as_infinite(through_weight)
            + own(shared["m_depthwise"] + through_weight, positions, g),
            "grad_pointwise_weight": unknown_as_infinite(carried)
            + own(shared["m_pointwise"] + carried, positions, g),
            "grad_depthwise_bias": _spatial_sum(e_gh)
            + own(_spatial_sum(a_gh + e_gh), positions, g),
            "grad_pointwise_bias": own(_spatial_sum(a_g), positions, g),
        }

    proven, unit = gammas(context.accumulation_dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return _finished(context, bounds(proven), bounds(unit), n_d + n_p)


def residual_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """First-order propagation through the block, forward and backward.

    Forward: each convolution carries its input's error as conv(delta, |W|) and adds its own
    gamma_n * conv(|x| + delta, |W|); batch norm carries it as batch_norm_carry and adds its
    own bound (its statistics stored in the tested dtype where that is narrower, as torch
    keeps them: normalization.Precision); ReLU is 1-Lipschitz; the sum adds its rounding.
    Backward, through the same ops in reverse: a ReLU mask can flip only where its input is
    within its forward error, and there the gradient may be off by all of it; batch norm's
    backward carries a gradient error with the forward carry's structure, adds its own
    arithmetic's bound, and feels its saved input's error through x_hat (d x_hat = the carry
    with w = 1) and r (relative r * mean(|x_hat| delta)); each convolution's adjoint carries
    with |W|, its weight gradient pairs errors with the other operand's magnitude (with its
    error), and adds gamma_n of the magnitudes. Every intermediate, forward and backward, is
    a torch tensor of the tested dtype: stored (rounding, eta, and no claim where it may pass
    the largest finite value: inf there makes NaN downstream), and every sum underflows by
    eta per term (accumulated). The scale replaces each gamma_k by u.

    The exact values and the magnitudes of exact operands (conv(|x|, |W|), the adjoints of
    |grad|) are the same for the bound and for the scale: they are computed once, and each
    pass adds only what its errors carry, by linearity: conv(|x| + delta, |W|) =
    conv(|x|, |W|) + conv(delta, |W|), and likewise for each adjoint."""
    inputs, config = context.inputs, context.example.config
    x = inputs["input"]
    assert x is not None
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    stride, eps = config["stride"], config["eps"]
    projection = inputs["shortcut_weight"] is not None
    steps = _Steps(context.accumulation_dtype, context.dtype)
    own, keep = steps.own, steps.keep
    precision = Precision.of(context)

    def weight(name: str) -> np.ndarray:
        array = inputs[name]
        assert array is not None
        return array

    # (weight name, stride, padding) of each convolution
    knobs = {"conv1": ("conv1_weight", stride, 1), "conv2": ("conv2_weight", 1, 1)}
    if projection:
        knobs["shortcut"] = ("shortcut_weight", stride, 0)

    def norm_knobs(prefix: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        return inputs[f"{prefix}_weight"], inputs[f"{prefix}_bias"]

    # the exact forward values, and each convolution's magnitude conv(|input|, |W|)
    v: dict[str, Any] = {}
    convs: dict[str, Convolution] = {}  # each planned once

    def conv_values(key: str, value: np.ndarray) -> np.ndarray:
        name, step, padding = knobs[key]
        w = weight(name)
        conv = convs[key] = Convolution(value.shape, w.shape, step, padding)
        v[f"m_{key}"] = conv.forward(np.abs(value), np.abs(w))
        return conv.forward(value, w)

    def norm_value(value: np.ndarray, prefix: str) -> np.ndarray:
        return reference.batch_norm(value, None, None, *norm_knobs(prefix), True, 0.0, eps)

    v["a1"] = conv_values("conv1", x)
    v["b1"] = norm_value(v["a1"], "bn1")
    v["hidden"] = np.maximum(v["b1"], 0.0)
    v["a2"] = conv_values("conv2", v["hidden"])
    skip = x
    if projection:
        v["a_s"] = conv_values("shortcut", x)
        skip = norm_value(v["a_s"], "shortcut_bn")
    v["body"] = norm_value(v["a2"], "bn2")
    v["z"] = v["body"] + skip

    def conv_error(
        key: str, out: np.ndarray, delta: np.ndarray | None, g: Callable[[int], float]
    ) -> np.ndarray:
        """The stored output's (out's) error: conv(delta, |W|) carried, plus the sum's own on
        conv(|input| + delta, |W|); delta None is an exact input."""
        w, magnitude = weight(knobs[key][0]), v[f"m_{key}"]
        n_terms = math.prod(w.shape[1:])
        if delta is None:
            return keep(out, own(magnitude, n_terms, g))
        carried = convs[key].forward(delta, np.abs(w))
        return keep(out, unknown_as_infinite(carried) + own(magnitude + carried, n_terms, g))

    def norm_error(
        value: np.ndarray,
        out: np.ndarray,
        delta: np.ndarray,
        prefix: str,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, NormErrors]:
        w, b = norm_knobs(prefix)
        own_bound, errors = batch_norm_own_bound(value, w, b, eps, g, u, precision)
        carried = unknown_as_infinite(carried_input_error(delta, w, errors))
        return keep(out, carried + own_bound), errors

    def forward(g: Callable[[int], float]) -> dict[str, Any]:
        """Each forward intermediate's error bound (e_*) and batch norm's terms (n*)."""
        e: dict[str, Any] = {}
        e["e_a1"] = conv_error("conv1", v["a1"], None, g)
        e["e_b1"], e["n1"] = norm_error(v["a1"], v["b1"], e["e_a1"], "bn1", g)
        e["e_a2"] = conv_error("conv2", v["a2"], e["e_b1"], g)
        e_body, e["n2"] = norm_error(v["a2"], v["body"], e["e_a2"], "bn2", g)
        e_skip: np.ndarray | float = 0.0
        if projection:
            e["e_as"] = conv_error("shortcut", v["a_s"], None, g)
            e_skip, e["n_s"] = norm_error(v["a_s"], skip, e["e_as"], "shortcut_bn", g)
        e["e_z"] = keep(v["z"], e_body + e_skip)
        return e

    def norm_backward(
        grad: np.ndarray,
        exact: np.ndarray,
        e_grad: np.ndarray,
        e_saved: np.ndarray,
        errors: NormErrors,
        prefix: str,
        g: Callable[[int], float],
    ) -> dict[str, np.ndarray]:
        """The errors of batch norm's gradients (exact: its exact grad_input)."""
        w, _ = norm_knobs(prefix)
        axes, shape = (0, 2, 3), errors.r.shape
        own_bounds = batch_norm_backward_own(grad, w, errors, True, g, u, precision)
        # the saved input's error in x_hat
        d_x_hat = unknown_as_infinite(carried_input_error(e_saved, None, errors))
        d_r = errors.r * channel_mean(np.abs(errors.x_hat) * e_saved).reshape(shape)
        gain = errors.r if w is None else errors.r * np.abs(w).reshape(shape)
        mixed = channel_mean(grad * errors.x_hat).reshape(shape)
        reach = channel_mean(np.abs(grad) * d_x_hat).reshape(shape)
        from_saved = gain * (d_x_hat * np.abs(mixed) + np.abs(errors.x_hat) * reach)
        from_saved = unknown_as_infinite(from_saved + np.abs(exact) * d_r / errors.r)
        carried = unknown_as_infinite(batch_norm_carry(e_grad, w, errors))
        # torch sums grad' x_hat' with grad' within e_grad of grad and x_hat' within the own
        # and the saved error of x_hat: the carried products, their cross term e_grad d_x_hat
        # included (a flipped ReLU mask makes e_grad as large as |grad| itself), and the sums'
        # own rounding of those extra magnitudes (g(n) of them)
        n = grad.size // grad.shape[1]
        extra_weight = (
            e_grad * (np.abs(errors.x_hat) + errors.d_x_hat + d_x_hat) + np.abs(grad) * d_x_hat
        ).sum(axis=axes)
        extra_bias = e_grad.sum(axis=axes)
        return {
            "grad_input": keep(exact, own_bounds["grad_input"] + carried + from_saved),
            "grad_weight": own_bounds["grad_weight"] + extra_weight * (1 + g(n)),
            "grad_bias": own_bounds["grad_bias"] + extra_bias * (1 + g(n)),
        }

    # the exact gradients, and each convolution's adjoints of |grad| (its magnitudes)
    def conv_grads(key: str, grad: np.ndarray, saved: np.ndarray) -> np.ndarray:
        w, conv = weight(knobs[key][0]), convs[key]
        a_grad = np.abs(grad)
        v[f"ga_{key}"] = a_grad
        v[f"gm_{key}"] = conv.grad_input(a_grad, np.abs(w)), conv.grad_weight(a_grad, np.abs(saved))
        return conv.grad_input(grad, w)

    def norm_grad(grad: np.ndarray, saved: np.ndarray, prefix: str) -> np.ndarray:
        w, b = norm_knobs(prefix)
        return reference.batch_norm_backward(grad, saved, None, None, w, b, True, 0.0, eps)[0]

    def gradients(grad: np.ndarray) -> None:
        v["grad_z"] = np.where(v["z"] > 0, grad, 0.0)
        v["g_a2"] = norm_grad(v["grad_z"], v["a2"], "bn2")
        v["g_hidden"] = conv_grads("conv2", v["g_a2"], v["hidden"])
        v["g_b1"] = np.where(v["b1"] > 0, v["g_hidden"], 0.0)
        v["g_a1"] = norm_grad(v["g_b1"], v["a1"], "bn1")
        v["g_x"] = conv_grads("conv1", v["g_a1"], x)
        if projection:
            v["g_as"] = norm_grad(v["grad_z"], v["a_s"], "shortcut_bn")
            v["g_skip"] = conv_grads("shortcut", v["g_as"], x)

    def conv_backward(
        key: str,
        e_grad: np.ndarray,
        saved: np.ndarray,
        e_saved: np.ndarray | None,
        exact: np.ndarray,
        g: Callable[[int], float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """(grad_input's stored error, grad_weight's error): grad's error paired with the
        saved input's magnitude and error, the saved input's error with |grad|, and the sums'
        own on the magnitudes with both errors (e_saved None: an exact saved input)."""
        w, conv = weight(knobs[key][0]), convs[key]
        a_saved = np.abs(saved) if e_saved is None else np.abs(saved) + e_saved
        through = conv.grad_input(e_grad, np.abs(w)), conv.grad_weight(e_grad, a_saved)
        carried_weight = through[1]
        if e_saved is not None:
            carried_weight = carried_weight + conv.grad_weight(v[f"ga_{key}"], e_saved)
        magnitude_input, magnitude_weight = v[f"gm_{key}"]
        positions = e_grad.size // e_grad.shape[1]
        e_input = unknown_as_infinite(through[0]) + own(
            magnitude_input + through[0], w.shape[0] * math.prod(w.shape[2:]), g
        )
        e_weight = unknown_as_infinite(carried_weight) + own(
            magnitude_weight + carried_weight, positions, g
        )
        return keep(exact, e_input), e_weight

    def backward(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        e = forward(g)
        grad = context.grad_output
        assert grad is not None
        e_gz = np.where(np.abs(v["z"]) <= e["e_z"], np.abs(grad), 0.0)
        e2 = norm_backward(v["grad_z"], v["g_a2"], e_gz, e["e_a2"], e["n2"], "bn2", g)
        e_hidden, e_conv2 = conv_backward(
            "conv2", e2["grad_input"], v["hidden"], e["e_b1"], v["g_hidden"], g
        )
        e_gb1 = e_hidden + np.where(np.abs(v["b1"]) <= e["e_b1"], np.abs(v["g_hidden"]), 0.0)
        e1 = norm_backward(v["g_b1"], v["g_a1"], e_gb1, e["e_a1"], e["n1"], "bn1", g)
        e_x, e_conv1 = conv_backward("conv1", e1["grad_input"], x, None, v["g_x"], g)
        found = {
            "grad_conv1_weight": e_conv1,
            "grad_bn1_weight": e1["grad_weight"],
            "grad_bn1_bias": e1["grad_bias"],
            "grad_conv2_weight": e_conv2,
            "grad_bn2_weight": e2["grad_weight"],
            "grad_bn2_bias": e2["grad_bias"],
        }
        if projection:
            e_s = norm_backward(v["grad_z"], v["g_as"], e_gz, e["e_as"], e["n_s"], "shortcut_bn", g)
            e_skip, e_conv_s = conv_backward("shortcut", e_s["grad_input"], x, None, v["g_skip"], g)
            found.update(
                grad_shortcut_weight=e_conv_s,
                grad_shortcut_bn_weight=e_s["grad_weight"],
                grad_shortcut_bn_bias=e_s["grad_bias"],
            )
            found["grad_input"] = keep(v["g_x"] + v["g_skip"], e_x + e_skip)
        else:
            found["grad_input"] = keep(v["g_x"] + v["grad_z"], e_x + e_gz)
        return found

    proven, unit = gammas(context.accumulation_dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        if context.direction == "forward":
            strict = {"output": forward(proven)["e_z"]}
            scale = {"output": forward(unit)["e_z"]}
        else:
            assert context.grad_output is not None
            gradients(context.grad_output)
            strict, scale = backward(proven), backward(unit)
        return _finished(context, strict, scale, 0)
