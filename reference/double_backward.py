"""Second derivatives: ``<op>_double_backward(grad_output, grad_grads, *arrays, **config)``.

The first backward maps (grad_output g, arrays a) to gradients G_i(a, g) = J_i(a)^T g. Double
backward differentiates the scalar L = sum_i <v_i, G_i> (``grad_grads`` holds the v_i, one per
differentiable argument, None for an absent one or a zero) with respect to the arrays and to g,
as ``torch.autograd.grad(G, (a, g), v)`` does. Both parts follow from the math:

- with respect to g, L = <g, J(a) v>: the JVP of the op with tangents v (reference.jvp);
- with respect to a, by the symmetry of second derivatives, d/de G(a + e v, g) at e = 0: the
  directional derivative of the backward along v.

The returned tuple is (dL/da_i for each differentiable argument, in order; dL/dg). For a
bilinear op y = f(x, w) + b the second part is dL/dx = G_x(g; w = v_w), dL/dw = G_w(g;
x = v_x), dL/db = 0; for a linear or piecewise-linear op (average, adaptive and max pooling,
unfold, fold) it is 0; lp pooling, batch norm and the blocks are derived below at each
function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reference import adaptive, blocks, conv, conv_transpose, normalization, pool
from reference import jvp as forward_mode
from reference._arguments import as_float_array
from reference.conv import check_grad_output
from reference.fold import fold, unfold

Cotangents = Sequence[np.ndarray | None]
Result = tuple[np.ndarray | None, ...]


def _filled(
    given: list[np.ndarray | None],
    primals: Sequence[np.ndarray | None],
    dtype: np.dtype | type = np.float64,
) -> list[np.ndarray | None]:
    """Zeros (of ``dtype``) for an omitted cotangent of a present argument."""
    return [
        None if p is None else (np.zeros_like(p, dtype=dtype) if v is None else v)
        for v, p in zip(given, primals, strict=True)
    ]


def _zeros(primal: np.ndarray | None) -> np.ndarray | None:
    return None if primal is None else np.zeros(np.shape(primal), dtype=np.float64)


def _grad(grad_output: object, like: np.ndarray) -> np.ndarray:
    return check_grad_output(grad_output, like.shape, False, like.dtype)


# --- bilinear ops ---------------------------------------------------------------------------


def make_bilinear(
    forward: Callable[..., np.ndarray],
    backward: Callable[..., Any],
    planned: Callable[..., forward_mode.Bilinear] | None = None,
) -> Callable[..., Result]:
    """``planned`` (the op's checked call) computes each part with one pass: the adjoint that
    is read, and the tangent's terms without a primal forward; without it the parts are calls
    of ``forward`` and ``backward``."""
    op = forward.__name__
    jvp = forward_mode.make_bilinear_jvp(forward)
    names = ("input", "weight", "bias")

    def double_backward(
        grad_output: np.ndarray,
        grad_grads: Cotangents,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *args: Any,
        **config: Any,
    ) -> Result:
        primals = tuple(zip(names, (input, weight, bias), strict=True))
        if planned is not None:
            call = planned(input, weight, bias, *args, **config)  # the primals' checks first
            given = forward_mode.check_tangents(grad_grads, primals, op, "grad_grads")
            forward_mode.check_same_dtypes(given, names, call.dtype, "grad_grads", op)
            vx, vw, vb = _filled(given, [input, weight, bias], call.dtype)
            assert vx is not None and vw is not None
            g = check_grad_output(grad_output, call.output_shape, False, call.dtype)
            return (
                call.grad_input(g, vw),
                call.grad_weight(g, vx),
                _zeros(bias),
                forward_mode.bilinear_tangent(call, vx, vw, vb),
            )
        out = forward(input, weight, bias, *args, **config)  # the primals' own checks first
        vx, vw, vb = _filled(
            forward_mode.check_tangents(grad_grads, primals, op, "grad_grads"),
            [input, weight, bias],
        )
        assert vx is not None and vw is not None
        g = _grad(grad_output, out)
        grad_input = backward(g, input, vw, None, *args, **config)[0]
        grad_weight = backward(g, vx, weight, None, *args, **config)[1]
        grad_grad_output = jvp([vx, vw, vb], input, weight, bias, *args, **config)
        return grad_input, grad_weight, _zeros(bias), grad_grad_output

    double_backward.__name__ = double_backward.__qualname__ = f"{op}_double_backward"
    forward_mode.with_signature(double_backward, forward, "grad_output", "grad_grads")
    return double_backward


# --- linear and piecewise-linear ops --------------------------------------------------------


def make_piecewise_linear(
    forward: Callable[..., Any], jvp: Callable[..., np.ndarray]
) -> Callable[..., Result]:
    op = forward.__name__

    def double_backward(
        grad_output: np.ndarray,
        grad_grads: Cotangents,
        input: np.ndarray,
        *args: Any,
        **config: Any,
    ) -> Result:
        forward(input, *args, **config)  # the primal's own checks first
        (v,) = _filled(
            forward_mode.check_tangents(grad_grads, (("input", input),), op, "grad_grads"), [input]
        )
        out = jvp([v], input, *args, **config)
        _grad(grad_output, out)
        return np.zeros(np.shape(input)), out

    double_backward.__name__ = double_backward.__qualname__ = f"{op}_double_backward"
    forward_mode.with_signature(double_backward, forward, "grad_output", "grad_grads")
    return double_backward


# --- lp pooling -----------------------------------------------------------------------------


def make_lp(dims: int) -> Callable[..., Result]:
    """G = x^(p-1) * scatter(g S^(1/p-1)); along v its derivative is
    (p-1) x^(p-2) v * scatter(g S^(1/p-1)) + x^(p-1) * scatter(g (1/p-1) S^(1/p-2) dS),
    dS = p * window sum of x^(p-1) v; 0 where S = 0, as the backward. At x = 0 with p < 2
    (fractional p: x >= 0, one-sided derivatives) x^(p-2) is infinite, and the first term,
    the derivative of v x^(p-1) C(x) with C = scatter(g S^(1/p-1)), is 0 where v = 0 (the
    element's G is not in L) or C = 0 (C moves by O(h^p) from x = 0 to h, dS/dx being
    p x^(p-1) = 0 there: v h^(p-1) C = o(h)), not inf * 0; elsewhere the one-sided +-inf."""
    op = f"lp_pool{dims}d"

    def double_backward(
        grad_output: np.ndarray,
        grad_grads: Cotangents,
        input: np.ndarray,
        norm_type: float,
        kernel_size: Any,
        stride: Any = None,
        ceil_mode: bool = False,
    ) -> Result:
        plan, p, sums = forward_mode.lp_parts(
            dims, input, norm_type, kernel_size, stride, ceil_mode
        )
        (v,) = _filled(
            forward_mode.check_tangents(grad_grads, (("input", input),), op, "grad_grads"), [input]
        )
        assert v is not None
        shape = (*plan.input.shape[:2], *plan.out_size)
        g = check_grad_output(grad_output, shape, plan.unbatched, plan.input.dtype)
        grad_grad_output = forward_mode.lp_tangent(plan, p, sums, v)  # the jvp in v
        if p == 1.0:
            return np.zeros(np.shape(input)), grad_grad_output
        x = plan.input
        tangent = v[np.newaxis] if plan.unbatched else v

        def scatter(per_window: np.ndarray) -> np.ndarray:
            return pool._spread(plan, np.broadcast_to(per_window, shape))

        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            d_sums = p * pool._window_sums(plan, np.power(x, p - 1.0) * tangent)
            first = scatter(g * forward_mode.lp_root_power(sums, 1.0 / p - 1.0))
            second = scatter(
                g * (1.0 / p - 1.0) * forward_mode.lp_root_power(sums, 1.0 / p - 2.0) * d_sums
            )
            curvature = np.where(  # 0 where v or C is 0, at x = 0 too (docstring)
                (tangent == 0) | (first == 0),
                0.0,
                (p - 1.0) * np.power(x, p - 2.0) * tangent * first,
            )
            grad_input = curvature + np.power(x, p - 1.0) * second
        return plan.finish(grad_input), grad_grad_output

    double_backward.__name__ = double_backward.__qualname__ = f"{op}_double_backward"
    return double_backward


# --- batch norm -----------------------------------------------------------------------------


def batch_norm_second(
    grad: np.ndarray,
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None,
    training: bool,
    eps: float,
    tangent_input: np.ndarray | None,
    tangent_weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The derivative of (grad_input, grad_weight) along tangents of (input, weight).

    Batch statistics: grad_input = w r A with A = g - mean(g) - x_hat mean(g x_hat), and
    along (dx, dw): dr = -r^2 mean(x_hat dx), d x_hat = r (dx - mean(dx) - x_hat mean(x_hat
    dx)), dA = -d x_hat mean(g x_hat) - x_hat mean(g d x_hat), so
    d grad_input = dw r A + w dr A + w r dA and d grad_weight = sum g d x_hat.
    Running statistics: d grad_input = g dw r, d grad_weight = sum g dx r."""
    axes = (0, *range(2, input.ndim))
    r, x_hat = forward_mode.batch_norm_parts(input, running_mean, running_var, training, eps)
    w = 1.0 if weight is None else forward_mode._per_channel(weight, input.ndim)
    dx = np.zeros_like(input) if tangent_input is None else tangent_input
    dw = 0.0 if tangent_weight is None else forward_mode._per_channel(tangent_weight, input.ndim)
    mean = forward_mode.channel_mean
    if not training:
        d_input = grad * dw * r
        d_weight = (grad * dx * r).sum(axis=axes)
    else:
        a = grad - mean(grad) - x_hat * mean(grad * x_hat)
        dr = -r * r * mean(x_hat * dx)
        d_x_hat = forward_mode.normalized_tangent(dx, r, x_hat)
        d_a = -d_x_hat * mean(grad * x_hat) - x_hat * mean(grad * d_x_hat)
        d_input = dw * r * a + w * dr * a + w * r * d_a
        d_weight = (grad * d_x_hat).sum(axis=axes)
    return d_input, None if weight is None else d_weight


def batch_norm_double_backward(
    grad_output: np.ndarray,
    grad_grads: Cotangents,
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Result:
    """(d/d input, d/d weight, d/d bias, d/d grad_output) of sum <v, batch_norm_backward>."""
    input = normalization._check(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    primals = (("input", input), ("weight", weight), ("bias", bias))
    v = forward_mode.check_tangents(grad_grads, primals, "batch_norm", "grad_grads")
    grad = _grad(grad_output, input)
    if input.shape[0] == 0:
        return (
            np.zeros_like(input),
            _zeros(weight),
            _zeros(bias),
            forward_mode.batch_norm_jvp(
                v, input, running_mean, running_var, weight, bias, training, momentum, eps
            ),
        )
    d_input, d_weight = batch_norm_second(
        grad, input, running_mean, running_var, weight, training, eps, v[0], v[1]
    )
    grad_grad_output = forward_mode.batch_norm_jvp(
        v, input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    return d_input, d_weight, _zeros(bias), grad_grad_output


# --- blocks ---------------------------------------------------------------------------------


def depthwise_separable_conv_double_backward(
    grad_output: np.ndarray,
    grad_grads: Cotangents,
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Result:
    """With z = D(x, Wd) + bd, y = P(z, Wp) + bp, G_z = P_z^T g, and dz the JVP of z along v:
    d G_z = P_z^T(g; Wp = v_Wp); d G_Wp = P_w^T(g; z = dz); d G_x = D_x^T(d G_z; Wd) +
    D_x^T(G_z; Wd = v_Wd); d G_Wd = D_w^T(d G_z; x) + D_w^T(G_z; x = v_x); d G_bd = sum d G_z;
    d G_bp = 0."""
    # the arguments' own checks, under their own names (the depthwise's knobs by its call)
    channels = blocks._check_separable(
        input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias
    )
    depthwise = {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels}
    hidden = conv.conv2d(input, depthwise_weight, depthwise_bias, **depthwise)
    input = as_float_array(input, "input")
    arrays = [input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias]
    names = ("input", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias")
    given = forward_mode.check_tangents(
        grad_grads, tuple(zip(names, arrays, strict=True)), "depthwise_separable_conv", "grad_grads"
    )
    vx, v_dw, v_pw, v_db, v_pb = _filled(given, arrays)
    assert vx is not None and v_dw is not None and v_pw is not None
    w_d = as_float_array(depthwise_weight, "depthwise_weight")
    w_p = as_float_array(pointwise_weight, "pointwise_weight")
    # each convolution planned once; each adjoint computed alone, where it is read
    pointwise = conv.Convolution(hidden.shape, w_p.shape, dtype=hidden.dtype)
    separable = conv.Convolution(input.shape, w_d.shape, **depthwise, dtype=input.dtype)
    g = check_grad_output(grad_output, pointwise.output_shape, False, hidden.dtype)
    d_hidden = forward_mode.conv2d_jvp([vx, v_dw, v_db], input, w_d, depthwise_bias, **depthwise)
    g_hidden = pointwise.grad_input(g, w_p)
    dg_hidden = pointwise.grad_input(g, v_pw)
    dg_pointwise = pointwise.grad_weight(g, d_hidden)
    dg_input = separable.grad_input(dg_hidden, w_d) + separable.grad_input(g_hidden, v_dw)
    dg_depthwise = separable.grad_weight(dg_hidden, input) + separable.grad_weight(g_hidden, vx)
    dg_depthwise_bias = None
    if depthwise_bias is not None:  # conv2d_backward's grad_bias: the batched sum
        batched = dg_hidden if dg_hidden.ndim == 4 else dg_hidden[np.newaxis]
        dg_depthwise_bias = batched.sum(axis=(0, 2, 3))
    grad_grad_output = forward_mode.conv2d_jvp(
        [d_hidden, v_pw, v_pb], hidden, w_p, pointwise_bias
    )  # depthwise_separable_conv_jvp's last link, d_hidden being its first
    return (
        dg_input,
        dg_depthwise,
        dg_pointwise,
        dg_depthwise_bias,
        _zeros(pointwise_bias),
        grad_grad_output,
    )


def residual_block_double_backward(
    grad_output: np.ndarray,
    grad_grads: Cotangents,
    input: np.ndarray,
    conv1_weight: np.ndarray,
    bn1_weight: np.ndarray,
    bn1_bias: np.ndarray,
    conv2_weight: np.ndarray,
    bn2_weight: np.ndarray,
    bn2_bias: np.ndarray,
    shortcut_weight: np.ndarray | None = None,
    shortcut_bn_weight: np.ndarray | None = None,
    shortcut_bn_bias: np.ndarray | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> Result:
    """The backward's chain (reference.blocks.residual_block_backward) differentiated along v
    link by link: each conv's input gradient changes with its cotangent and its weight
    (d G_x = C_x^T(dG; W) + C_x^T(G; v_W)), each weight gradient with its cotangent and its
    input's tangent, each batch norm's by batch_norm_second plus its backward of the changed
    cotangent, and the ReLU masks not at all (piecewise linear)."""
    # the arguments' own checks, under their own names, then the forward values
    values = blocks._residual_forward(
        input, conv1_weight, bn1_weight, bn1_bias, conv2_weight, bn2_weight, bn2_bias,
        shortcut_weight, shortcut_bn_weight, shortcut_bn_bias, stride, eps,
    )  # fmt: skip
    arrays: list[np.ndarray | None] = [
        None if a is None else as_float_array(a, name)
        for a, name in zip(
            (input, conv1_weight, bn1_weight, bn1_bias, conv2_weight, bn2_weight, bn2_bias,
             shortcut_weight, shortcut_bn_weight, shortcut_bn_bias),
            forward_mode.RESIDUAL_ARRAYS,
            strict=True,
        )
    ]  # fmt: skip
    x, w1, w2, ws = arrays[0], arrays[1], arrays[4], arrays[7]
    assert x is not None and w1 is not None and w2 is not None
    given = forward_mode.check_tangents(
        grad_grads,
        tuple(zip(forward_mode.RESIDUAL_ARRAYS, arrays, strict=True)),
        "residual_block",
        "grad_grads",
    )
    v = _filled(given, arrays)
    vx, v_w1, v_g1, _, v_w2, v_g2, _, v_ws, v_gs, _ = v
    assert vx is not None and v_w1 is not None and v_w2 is not None
    t = forward_mode.residual_tangents(v, arrays, values, stride, eps)
    g = _grad(grad_output, values.body + values.skip)
    bn_backward = normalization.batch_norm_backward
    # each convolution planned once; each adjoint computed alone, where it is read
    conv1 = conv.Convolution(x.shape, w1.shape, stride, 1, dtype=x.dtype)
    conv2 = conv.Convolution(values.hidden.shape, w2.shape, 1, 1, dtype=x.dtype)
    g_z = np.where(values.body + values.skip > 0, g, 0.0)

    g_a2 = bn_backward(g_z, values.a2, None, None, bn2_weight, bn2_bias, True, 0.0, eps)[0]
    dg_a2, dg_bn2_w = batch_norm_second(
        g_z, values.a2, None, None, bn2_weight, True, eps, t["a2"], v_g2
    )
    dg_hidden = conv2.grad_input(dg_a2, w2) + conv2.grad_input(g_a2, v_w2)
    dg_conv2 = conv2.grad_weight(dg_a2, values.hidden) + conv2.grad_weight(g_a2, t["hidden"])
    g_hidden = conv2.grad_input(g_a2, w2)
    on = values.b1 > 0
    g_b1, dg_b1 = np.where(on, g_hidden, 0.0), np.where(on, dg_hidden, 0.0)
    g_a1 = bn_backward(g_b1, values.a1, None, None, bn1_weight, bn1_bias, True, 0.0, eps)[0]
    moved = bn_backward(dg_b1, values.a1, None, None, bn1_weight, bn1_bias, True, 0.0, eps)
    second_a1, second_bn1_w = batch_norm_second(
        g_b1, values.a1, None, None, bn1_weight, True, eps, t["a1"], v_g1
    )
    dg_a1 = moved[0] + second_a1
    assert moved[1] is not None and second_bn1_w is not None
    dg_bn1_w, dg_bn1_b = moved[1] + second_bn1_w, moved[2]
    dg_input = conv1.grad_input(dg_a1, w1) + conv1.grad_input(g_a1, v_w1)
    dg_conv1 = conv1.grad_weight(dg_a1, x) + conv1.grad_weight(g_a1, vx)
    shortcut: tuple[np.ndarray | None, ...] = (None, None, None)
    if values.a_s is not None:
        assert ws is not None and v_ws is not None
        projection = conv.Convolution(x.shape, ws.shape, stride, dtype=x.dtype)
        g_as = bn_backward(
            g_z, values.a_s, None, None, shortcut_bn_weight, shortcut_bn_bias, True, 0.0, eps
        )[0]
        dg_as, dg_short_bn_w = batch_norm_second(
            g_z, values.a_s, None, None, shortcut_bn_weight, True, eps, t["a_s"], v_gs
        )
        dg_input = dg_input + projection.grad_input(dg_as, ws) + projection.grad_input(g_as, v_ws)
        dg_short = projection.grad_weight(dg_as, x) + projection.grad_weight(g_as, vx)
        shortcut = (dg_short, dg_short_bn_w, _zeros(shortcut_bn_bias))
    return (
        dg_input,
        dg_conv1,
        dg_bn1_w,
        dg_bn1_b,
        dg_conv2,
        dg_bn2_w,
        _zeros(bn2_bias),
        *shortcut,
        t["output"],
    )


conv1d_double_backward = make_bilinear(
    conv.conv1d, conv.conv1d_backward, forward_mode.planned_conv(1)
)
conv2d_double_backward = make_bilinear(
    conv.conv2d, conv.conv2d_backward, forward_mode.planned_conv(2)
)
conv3d_double_backward = make_bilinear(
    conv.conv3d, conv.conv3d_backward, forward_mode.planned_conv(3)
)
conv_transpose1d_double_backward = make_bilinear(
    conv_transpose.conv_transpose1d,
    conv_transpose.conv_transpose1d_backward,
    forward_mode.planned_conv_transpose(1),
)
conv_transpose2d_double_backward = make_bilinear(
    conv_transpose.conv_transpose2d,
    conv_transpose.conv_transpose2d_backward,
    forward_mode.planned_conv_transpose(2),
)
conv_transpose3d_double_backward = make_bilinear(
    conv_transpose.conv_transpose3d,
    conv_transpose.conv_transpose3d_backward,
    forward_mode.planned_conv_transpose(3),
)
patch_embedding_double_backward = make_bilinear(
    blocks.patch_embedding, blocks.patch_embedding_backward
)
avg_pool1d_double_backward = make_piecewise_linear(pool.avg_pool1d, forward_mode.avg_pool1d_jvp)
avg_pool2d_double_backward = make_piecewise_linear(pool.avg_pool2d, forward_mode.avg_pool2d_jvp)
avg_pool3d_double_backward = make_piecewise_linear(pool.avg_pool3d, forward_mode.avg_pool3d_jvp)
adaptive_avg_pool1d_double_backward = make_piecewise_linear(
    adaptive.adaptive_avg_pool1d, forward_mode.adaptive_avg_pool1d_jvp
)
adaptive_avg_pool2d_double_backward = make_piecewise_linear(
    adaptive.adaptive_avg_pool2d, forward_mode.adaptive_avg_pool2d_jvp
)
adaptive_avg_pool3d_double_backward = make_piecewise_linear(
    adaptive.adaptive_avg_pool3d, forward_mode.adaptive_avg_pool3d_jvp
)
adaptive_max_pool1d_double_backward = make_piecewise_linear(
    adaptive.adaptive_max_pool1d, forward_mode.adaptive_max_pool1d_jvp
)
adaptive_max_pool2d_double_backward = make_piecewise_linear(
    adaptive.adaptive_max_pool2d, forward_mode.adaptive_max_pool2d_jvp
)
adaptive_max_pool3d_double_backward = make_piecewise_linear(
    adaptive.adaptive_max_pool3d, forward_mode.adaptive_max_pool3d_jvp
)
max_pool1d_double_backward = make_piecewise_linear(pool.max_pool1d, forward_mode.max_pool1d_jvp)
max_pool2d_double_backward = make_piecewise_linear(pool.max_pool2d, forward_mode.max_pool2d_jvp)
max_pool3d_double_backward = make_piecewise_linear(pool.max_pool3d, forward_mode.max_pool3d_jvp)
unfold_double_backward = make_piecewise_linear(unfold, forward_mode.unfold_jvp)
fold_double_backward = make_piecewise_linear(fold, forward_mode.fold_jvp)
lp_pool1d_double_backward = make_lp(1)
lp_pool2d_double_backward = make_lp(2)
lp_pool3d_double_backward = make_lp(3)
