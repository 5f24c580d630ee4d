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


def _abs(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.abs(array)


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
    u = UNIT_ROUNDOFF[context.accumulation_dtype]
    steps = _Steps(context.accumulation_dtype, context.dtype)
    own, keep = steps.own, steps.keep
    knobs = (config["stride"], config["padding"], config["dilation"], x.shape[-3])
    h = reference.conv2d(x, w_d, b_d, *knobs)
    positions = h.size // h.shape[-3]  # T
    n_d, n_p = math.prod(w_d.shape[2:]) + 1, w_p.shape[1] + 1
    reach = w_d.shape[0] // x.shape[-3] * math.prod(w_d.shape[2:])
    a_x, a_h, a_wd, a_wp = np.abs(x), np.abs(h), np.abs(w_d), np.abs(w_p)

    def bounds(g: Callable[[int], float]) -> dict[str, np.ndarray]:
        e_h = keep(h, own(reference.conv2d(a_x, a_wd, _abs(b_d), *knobs), n_d, g))
        if context.direction == "forward":
            carried = unknown_as_infinite(reference.conv2d(e_h, a_wp))
            return {"output": carried + own(reference.conv2d(a_h + e_h, a_wp, _abs(b_p)), n_p, g)}
        grad = context.grad_output
        assert grad is not None
        a_g = np.abs(grad)
        grad_h = reference.conv2d_backward(grad, h, w_p)[0]
        a_gh = np.abs(grad_h)
        e_gh = keep(grad_h, own(reference.conv2d_backward(a_g, a_h, a_wp)[0], w_p.shape[0], g))
        through = reference.conv2d_backward(e_gh, a_x, a_wd, None, *knobs)
        summed = reference.conv2d_backward(a_gh + e_gh, a_x, a_wd, None, *knobs)
        pointwise_carried = unknown_as_infinite(reference.conv2d_backward(a_g, e_h, a_wp)[1])
        pointwise_own = reference.conv2d_backward(a_g, a_h + e_h, a_wp)[1]
        return {
            "grad_input": unknown_as_infinite(through[0]) + own(summed[0], reach, g),
            "grad_depthwise_weight": unknown_as_infinite(through[1]) + own(summed[1], positions, g),
            "grad_pointwise_weight": pointwise_carried + own(pointwise_own, positions, g),
            "grad_depthwise_bias": _spatial_sum(e_gh)
            + own(_spatial_sum(a_gh + e_gh), positions, g),
            "grad_pointwise_bias": own(_spatial_sum(a_g), positions, g),
        }

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    with np.errstate(invalid="ignore", over="ignore"):
        return _finished(context, bounds(proven), bounds(lambda k: u), n_d + n_p)


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
    eta per term (accumulated). The scale replaces each gamma_k by u."""
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
        carried = unknown_as_infinite(reference.conv2d(delta, np.abs(w), None, step, padding))
        return out, keep(out, carried + own(reach, math.prod(w.shape[1:]), g))

    def norm(
        value: np.ndarray, delta: np.ndarray, prefix: str, g: Callable[[int], float]
    ) -> tuple[np.ndarray, np.ndarray, NormErrors]:
        w, b = inputs[f"{prefix}_weight"], inputs[f"{prefix}_bias"]
        own_bound, errors = batch_norm_own_bound(value, w, b, eps, g, u, precision)
        out = reference.batch_norm(value, None, None, w, b, True, 0.0, eps)
        carried = unknown_as_infinite(carried_input_error(delta, w, errors))
        return out, keep(out, carried + own_bound), errors

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
        values.update(z=z, e_z=keep(z, e_body + values["e_skip"]))
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
        own_bounds = batch_norm_backward_own(grad, w, errors, True, g, u, precision)
        # the saved input's error in x_hat
        d_x_hat = unknown_as_infinite(carried_input_error(e_saved, None, errors))
        d_r = errors.r * (np.abs(errors.x_hat) * e_saved).mean(axis=axes).reshape(shape)
        gain = errors.r if w is None else errors.r * np.abs(w).reshape(shape)
        mixed = (grad * errors.x_hat).mean(axis=axes).reshape(shape)
        reach = (np.abs(grad) * d_x_hat).mean(axis=axes).reshape(shape)
        from_saved = gain * (d_x_hat * np.abs(mixed) + np.abs(errors.x_hat) * reach)
        from_saved = unknown_as_infinite(from_saved + np.abs(exact[0]) * d_r / errors.r)
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
        bounds = {
            "grad_input": keep(exact[0], own_bounds["grad_input"] + carried + from_saved),
            "grad_weight": own_bounds["grad_weight"] + extra_weight * (1 + g(n)),
            "grad_bias": own_bounds["grad_bias"] + extra_bias * (1 + g(n)),
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
        a_w = np.abs(w)
        grad_input = reference.conv2d_backward(grad, saved, w, None, step, padding)[0]
        # errors of grad (paired with the saved input's magnitude and error) and of saved
        through = reference.conv2d_backward(
            e_grad, np.abs(saved) + e_saved, a_w, None, step, padding
        )
        paired = reference.conv2d_backward(np.abs(grad), e_saved, a_w, None, step, padding)
        summed = reference.conv2d_backward(
            np.abs(grad) + e_grad, np.abs(saved) + e_saved, a_w, None, step, padding
        )
        positions = grad.size // grad.shape[1]
        e_input = unknown_as_infinite(through[0]) + own(
            summed[0], w.shape[0] * math.prod(w.shape[2:]), g
        )
        e_weight = unknown_as_infinite(through[1] + paired[1]) + own(summed[1], positions, g)
        return grad_input, keep(grad_input, e_input), e_weight

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
            found["grad_input"] = keep(g_x + g_skip, e_x + e_skip)
        else:
            found["grad_input"] = keep(g_x + grad_z, e_x + e_gz)
        return found

    def proven(k: int) -> float:
        return gamma(k, u) + gamma(k, ORACLE_ROUNDOFF)

    with np.errstate(invalid="ignore", over="ignore"):
        if context.direction == "forward":
            strict = {"output": forward(proven)["e_z"]}
            scale = {"output": forward(lambda k: u)["e_z"]}
        else:
            strict, scale = backward(proven), backward(lambda k: u)
        return _finished(context, strict, scale, 0)
