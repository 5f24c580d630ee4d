"""The bounds of conv_transpose_conv (reference.fused): a 2-d transposed convolution, its output
h stored in the tested dtype, then a stride-1 convolution of h; the composition of
conformance.judge.block_bounds's moves, as depthwise_separable_conv's bound composes its two
convolutions.

Forward: h's own error gamma_{n_t} M_h (n_t = in_channels * kh * kw + 1 terms at most per
output of the transposed convolution, M_h = conv_transpose2d(|x|, |W_t|, |b_t|)), stored
(rounding, eta, no claim past the range); the convolution carries it as conv2d(e_h, |W_c|)
and adds gamma_{n_c} of conv2d(|h| + e_h, |W_c|) + |b_c| (n_c = mid * kh' * kw' + 1).

Backward, in reverse: grad_h = conv2d's grad_input of grad_output (out * kh' * kw' terms),
stored; conv_weight's and conv_bias's gradients pair grad_output with h (its error
e_h carried with |grad_output|); the transposed convolution's adjoints carry grad_h's error
with |W_t| and |x| and add gamma_k of the magnitudes (|grad_h| + e_gh). Each bound's last
rounding and the range are block_bounds's _finished; the scale replaces each gamma_k by u.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import reference
from conformance.catalogue.spec import ToleranceContext
from conformance.judge.block_bounds import _abs, _finished, _Steps, _with_bias, gammas
from conformance.judge.error_model import (
    Tolerance,
    unknown_as_infinite,
)
from reference.conv import Convolution

AXES = (0, 2, 3)


def _transposed_knobs(config: dict) -> tuple:
    """conv_transpose2d's (stride, padding, output_padding, groups, dilation)."""
    return (
        config.get("stride", 1),
        config.get("padding", 0),
        config.get("output_padding", 0),
        1,
        config.get("dilation", 1),
    )


def conv_transpose_conv_tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
    """The composed bound (module docstring)."""
    inputs, config = context.inputs, dict(context.example.config)
    x, w_t, w_c = inputs["input"], inputs["transpose_weight"], inputs["conv_weight"]
    b_t, b_c = inputs["transpose_bias"], inputs["conv_bias"]
    assert x is not None and w_t is not None and w_c is not None
    unbatched = x.ndim == 3
    xb = x[np.newaxis] if unbatched else x
    knobs = _transposed_knobs(config)
    steps = _Steps(context.accumulation_dtype, context.dtype)
    own, keep = steps.own, steps.keep
    a_x, a_wt, a_wc = np.abs(xb), np.abs(w_t), np.abs(w_c)
    h = reference.conv_transpose2d(xb, w_t, b_t, *knobs)
    a_h = np.abs(h)
    conv = Convolution(h.shape, w_c.shape, 1, config.get("conv_padding", 0))
    n_t = w_t.shape[0] * math.prod(w_t.shape[2:]) + 1
    n_c = math.prod(w_c.shape[1:]) + 1
    m_h = _with_bias(reference.conv_transpose2d(a_x, a_wt, None, *knobs), _abs(b_t))
    positions_c = math.prod(conv.output_shape) // conv.output_shape[1]  # N * out positions
    positions_h = h.size // h.shape[1]
    positions_x = xb.size // xb.shape[1]

    def unbatch(array: np.ndarray) -> np.ndarray:
        return array[0] if unbatched else array

    def transposed_adjoints(grad_h: np.ndarray, x_: np.ndarray, w_: np.ndarray) -> tuple:
        """conv_transpose2d's (grad_input, grad_weight) of grad_h with x_ and w_."""
        gi, gw, _ = reference.conv_transpose2d_backward(grad_h, x_, w_, None, *knobs)
        return gi, gw

    if context.direction == "forward":
        m_out = _with_bias(conv.forward(a_h, a_wc), _abs(b_c))

        def forward(g: Callable[[int], float]) -> dict[str, np.ndarray]:
            e_h = keep(h, own(m_h, n_t, g))
            carried = conv.forward(e_h, a_wc)
            return {"output": unbatch(unknown_as_infinite(carried) + own(m_out + carried, n_c, g))}

        bounds = forward
    else:
        grad = context.grad_output
        assert grad is not None
        gb = grad[np.newaxis] if unbatched else grad
        a_g = np.abs(gb)
        grad_h = conv.grad_input(gb, w_c)
        a_gh = np.abs(grad_h)
        m_gh = conv.grad_input(a_g, a_wc)
        m_wc = conv.grad_weight(a_g, a_h)
        m_input, m_wt = transposed_adjoints(a_gh, a_x, a_wt)
        reach_c = w_c.shape[0] * math.prod(w_c.shape[2:])  # grad_h's terms
        reach_t = w_t.shape[1] * math.prod(w_t.shape[2:])  # grad_input's terms at most

        def backward(g: Callable[[int], float]) -> dict[str, np.ndarray]:
            e_h = keep(h, own(m_h, n_t, g))
            e_gh = keep(grad_h, own(m_gh, reach_c, g))
            through_input, through_wt = transposed_adjoints(e_gh, a_x, a_wt)
            carried_wc = conv.grad_weight(a_g, e_h)
            bounds = {
                "grad_input": unbatch(
                    unknown_as_infinite(through_input) + own(m_input + through_input, reach_t, g)
                ),
                "grad_transpose_weight": unknown_as_infinite(through_wt)
                + own(m_wt + through_wt, positions_x, g),
                "grad_conv_weight": unknown_as_infinite(carried_wc)
                + own(m_wc + carried_wc, positions_c, g),
                "grad_transpose_bias": e_gh.sum(AXES)
                + own((a_gh + e_gh).sum(AXES), positions_h, g),
                "grad_conv_bias": own(a_g.sum(AXES), positions_c, g),
            }
            return {name: unknown_as_infinite(b) for name, b in bounds.items()}

        bounds = backward

    proven, unit = gammas(context.accumulation_dtype)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _finished(context, bounds(proven), bounds(unit), n_t + n_c)
