"""Error bounds of the two blocks' derivative directions (depthwise-separable convolution and
the residual block): the running error analysis of conformance.judge.derivative_bounds
carried through their convolutions, batch norms and ReLUs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.spec import CustomTolerances, OpSpec, ToleranceContext
from conformance.judge.derivative_bounds import (
    Normalizer,
    _arithmetic,
    _channel_vector,
    _exact,
    _tolerances,
)
from conformance.judge.derivatives import GRAD_GRAD_OUTPUT, JVP_OUTPUT
from conformance.judge.error_model import Tolerance
from conformance.judge.running_error import Arithmetic, Tracked
from reference import jvp as forward_mode
from reference.conv import Convolution


class Conv2d:
    """One 2-d convolution of a block, as bilinear maps for the running error analysis."""

    def __init__(
        self, arithmetic: Arithmetic, weight: np.ndarray, x_shape: Sequence[int], **config: Any
    ) -> None:
        self.A = arithmetic
        self.conv = Convolution(tuple(x_shape), weight.shape, **config)
        groups = config.get("groups", 1)
        taps = math.prod(weight.shape[2:])
        self.n_forward = weight.shape[1] * taps + 1
        self.n_input = weight.shape[0] // groups * taps + 1
        out = self.conv.output_shape
        self.n_weight = out[0] * math.prod(out[2:]) + 1

    def forward(self, x: Tracked, w: Tracked) -> Tracked:
        return self.A.bilinear(self.conv.forward, x, w, self.n_forward)

    def backward_input(self, g: Tracked, w: Tracked) -> Tracked:
        return self.A.bilinear(self.conv.grad_input, g, w, self.n_input)

    def backward_weight(self, g: Tracked, x: Tracked) -> Tracked:
        return self.A.bilinear(self.conv.grad_weight, g, x, self.n_weight)

    def jvp(self, x: Tracked, dx: Tracked, w: Tracked, dw: Tracked) -> Tracked:
        return self.A.add(self.forward(dx, w), self.forward(x, dw))


def _bias_map(A: Arithmetic, bias: Tracked, like: np.ndarray) -> Tracked:
    return A.mul(bias, A.exact(np.ones_like(like)))


def separable_derivative_tolerances(spec: OpSpec) -> CustomTolerances:
    """reference.double_backward.depthwise_separable_conv_double_backward's chain, every
    convolution a bilinear map of its own sum length, every intermediate stored."""

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        A = _arithmetic(context)
        inputs, config = context.inputs, dict(context.example.config)
        x, wd, wp = inputs["input"], inputs["depthwise_weight"], inputs["pointwise_weight"]
        assert x is not None and wd is not None and wp is not None
        unbatched = x.ndim == 3
        xb = x[np.newaxis] if unbatched else x
        depthwise = Conv2d(A, wd, xb.shape, groups=xb.shape[1], **config)
        pointwise = Conv2d(A, wp, depthwise.conv.output_shape)  # on the depthwise output

        def batched(a: np.ndarray | None) -> Tracked | None:
            if a is None:
                return None
            return A.exact(a[np.newaxis] if unbatched and a.ndim == 3 else a)

        def channel(a: np.ndarray | None) -> Tracked | None:
            return None if a is None else A.exact(a.reshape(1, -1, 1, 1))

        t = context.tangents
        X, WD, WP = A.exact(xb), A.exact(wd), A.exact(wp)
        tX, tWD, tWP = (
            batched(t["input"]),
            batched(t["depthwise_weight"]),
            batched(t["pointwise_weight"]),
        )
        assert tX is not None and tWD is not None and tWP is not None
        bd, tbd, tbp = (
            channel(inputs["depthwise_bias"]),
            channel(t["depthwise_bias"]),
            channel(t["pointwise_bias"]),
        )
        hidden = depthwise.forward(X, WD)
        if bd is not None:
            hidden = A.add(hidden, _bias_map(A, bd, hidden.value))
        d_hidden = depthwise.jvp(X, tX, WD, tWD)
        if tbd is not None:
            d_hidden = A.add(d_hidden, _bias_map(A, tbd, d_hidden.value))
        jvp = pointwise.jvp(hidden, d_hidden, WP, tWP)
        if tbp is not None:
            jvp = A.add(jvp, _bias_map(A, tbp, jvp.value))
        n = depthwise.n_forward + pointwise.n_forward + 8

        def unbatch(tracked: Tracked) -> Tracked:
            if not unbatched:
                return tracked
            return Tracked(tracked.value[0], tracked.error[0])

        if context.direction == "jvp":
            return _tolerances(context, {JVP_OUTPUT: unbatch(jvp)}, n)
        assert context.grad_output is not None
        g = batched(context.grad_output)
        assert g is not None
        g_hidden = pointwise.backward_input(g, WP)
        dg_hidden = pointwise.backward_input(g, tWP)
        dg_pointwise = pointwise.backward_weight(g, d_hidden)
        dg_input = A.add(
            depthwise.backward_input(dg_hidden, WD), depthwise.backward_input(g_hidden, tWD)
        )
        dg_depthwise = A.add(
            depthwise.backward_weight(dg_hidden, X), depthwise.backward_weight(g_hidden, tX)
        )
        dg_bias = A.reduce(dg_hidden, (0, 2, 3))
        bounds: dict[str, Tracked | None] = {
            "grad_input": unbatch(dg_input),
            "grad_depthwise_weight": dg_depthwise,
            "grad_pointwise_weight": dg_pointwise,
            "grad_depthwise_bias": None if bd is None else _channel_vector(dg_bias),
            GRAD_GRAD_OUTPUT: unbatch(jvp),
        }
        return _tolerances(context, bounds, n + depthwise.n_weight)

    return tolerances


def residual_derivative_tolerances(spec: OpSpec) -> CustomTolerances:
    """reference.double_backward.residual_block_double_backward's chain link by link."""

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        A = _arithmetic(context)
        inputs, config = context.inputs, context.example.config
        stride, eps = config.get("stride", 1), config.get("eps", 1e-5)
        x = inputs["input"]
        assert x is not None
        t = {name: _exact(context.tangents.get(name)) for name in forward_mode.RESIDUAL_ARRAYS}

        def channel(name: str, source: Mapping[str, Any]) -> Tracked | None:
            value = source[name]
            if value is None:
                return None
            if isinstance(value, Tracked):
                return Tracked(value.value.reshape(1, -1, 1, 1), value.error.reshape(1, -1, 1, 1))
            return A.exact(np.asarray(value).reshape(1, -1, 1, 1))

        X = A.exact(x)
        w1, w2 = inputs["conv1_weight"], inputs["conv2_weight"]
        assert w1 is not None and w2 is not None
        W1, W2 = A.exact(w1), A.exact(w2)
        assert (
            t["input"] is not None
            and t["conv1_weight"] is not None
            and t["conv2_weight"] is not None
        )
        conv1 = Conv2d(A, W1.value, x.shape, stride=stride, padding=1)
        # the hidden activation has conv1's output shape (the oracle ran the block's checks)
        conv2 = Conv2d(A, W2.value, conv1.conv.output_shape, padding=1)
        # forward with errors
        a1 = conv1.forward(X, W1)
        bn1 = Normalizer(A, a1, eps)
        g1, b1 = channel("bn1_weight", inputs), channel("bn1_bias", inputs)
        pre1 = A.mul(g1, bn1.x_hat) if g1 is not None else bn1.x_hat
        b1_value = A.add(pre1, b1) if b1 is not None else pre1  # bn1's output
        hidden = A.relu(b1_value)
        a2 = conv2.forward(hidden, W2)
        bn2 = Normalizer(A, a2, eps)
        g2 = channel("bn2_weight", inputs)
        shortcut = None
        ws = inputs["shortcut_weight"]
        if ws is not None:  # a projection shortcut
            Ws = A.exact(ws)
            shortcut = Conv2d(A, Ws.value, x.shape, stride=stride)
            a_s = shortcut.forward(X, Ws)
            bn_s = Normalizer(A, a_s, eps)
            g_s = channel("shortcut_bn_weight", inputs)
        b2 = channel("bn2_bias", inputs)
        body = A.mul(g2, bn2.x_hat) if g2 is not None else bn2.x_hat
        body = A.add(body, b2) if b2 is not None else body
        if shortcut is None:
            skip = X
        else:
            b_s = channel("shortcut_bn_bias", inputs)
            skip = A.mul(g_s, bn_s.x_hat) if g_s is not None else bn_s.x_hat
            skip = A.add(skip, b_s) if b_s is not None else skip
        z = A.add(body, skip)  # the block's output before its ReLU
        # tangents
        ta1 = conv1.jvp(X, t["input"], W1, t["conv1_weight"])
        tb1 = bn1.jvp(ta1, g1, channel("bn1_weight", t), channel("bn1_bias", t))
        th = A.relu_derivative(b1_value, tb1)
        ta2 = conv2.jvp(hidden, th, W2, t["conv2_weight"])
        tbody = bn2.jvp(ta2, g2, channel("bn2_weight", t), channel("bn2_bias", t))
        if shortcut is None:
            tskip = t["input"]
        else:
            assert t["shortcut_weight"] is not None
            ta_s = shortcut.jvp(X, t["input"], Ws, t["shortcut_weight"])
            tskip = bn_s.jvp(
                ta_s, g_s, channel("shortcut_bn_weight", t), channel("shortcut_bn_bias", t)
            )
        jvp = A.relu_derivative(z, A.add(tbody, tskip))
        n = conv1.n_forward + conv2.n_forward + 4 * bn1.n + 16
        if context.direction == "jvp":
            return _tolerances(context, {JVP_OUTPUT: jvp}, n)
        assert context.grad_output is not None
        gz = A.relu_derivative(z, A.exact(context.grad_output))
        g_a2 = bn2.backward_input(gz, g2)
        dg_a2, dg_bn2_w = bn2.second(gz, g2, ta2, channel("bn2_weight", t))
        dg_hidden = A.add(
            conv2.backward_input(dg_a2, W2), conv2.backward_input(g_a2, t["conv2_weight"])
        )
        dg_conv2 = A.add(conv2.backward_weight(dg_a2, hidden), conv2.backward_weight(g_a2, th))
        g_b1 = A.relu_derivative(b1_value, conv2.backward_input(g_a2, W2))
        dg_b1 = A.relu_derivative(b1_value, dg_hidden)
        g_a1 = bn1.backward_input(g_b1, g1)
        second_a1, second_bn1_w = bn1.second(g_b1, g1, ta1, channel("bn1_weight", t))
        dg_a1 = A.add(bn1.backward_input(dg_b1, g1), second_a1)
        dg_bn1_w = A.add(bn1.total(A.mul(dg_b1, bn1.x_hat)), second_bn1_w)
        dg_bn1_b = bn1.total(dg_b1)
        dg_input = A.add(
            conv1.backward_input(dg_a1, W1), conv1.backward_input(g_a1, t["conv1_weight"])
        )
        dg_conv1 = A.add(conv1.backward_weight(dg_a1, X), conv1.backward_weight(g_a1, t["input"]))
        bounds: dict[str, Tracked | None] = {
            "grad_conv1_weight": dg_conv1,
            "grad_bn1_weight": _channel_vector(dg_bn1_w),
            "grad_bn1_bias": _channel_vector(dg_bn1_b),
            "grad_conv2_weight": dg_conv2,
            "grad_bn2_weight": _channel_vector(dg_bn2_w),
            GRAD_GRAD_OUTPUT: jvp,
        }
        if shortcut is not None:
            assert t["shortcut_weight"] is not None
            g_as = bn_s.backward_input(gz, g_s)
            dg_as, dg_short_w = bn_s.second(gz, g_s, ta_s, channel("shortcut_bn_weight", t))
            dg_input = A.add(
                dg_input,
                A.add(
                    shortcut.backward_input(dg_as, Ws),
                    shortcut.backward_input(g_as, t["shortcut_weight"]),
                ),
            )
            bounds["grad_shortcut_weight"] = A.add(
                shortcut.backward_weight(dg_as, X), shortcut.backward_weight(g_as, t["input"])
            )
            bounds["grad_shortcut_bn_weight"] = _channel_vector(dg_short_w)
        bounds["grad_input"] = dg_input
        return _tolerances(context, bounds, n + conv1.n_weight)

    return tolerances
