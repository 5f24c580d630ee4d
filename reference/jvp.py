"""Forward-mode derivatives: ``<op>_jvp(tangents, *arrays, **config)``, from the math.

``tangents`` holds one array per differentiable argument of the op, in argument order (the
order of ``<op>_backward``'s gradients), ``None`` for an absent argument or a zero tangent.
The result is the directional derivative of the op's (first) output, J(arrays) @ tangents:

- bilinear ops (convolution, transposed convolution, patch embedding), y = f(x, w) + b:
  dy = f(dx, w) + f(x, dw) + db;
- linear ops (average and adaptive average pooling, unfold, fold): dy = f(dx);
- max pooling: the tangent at the element the forward selected (0 for a window with none);
- lp pooling, y = S ** (1/p) with S the window sum of x ** p:
  dy = S ** (1/p - 1) * window sum of x ** (p - 1) dx, 0 where S = 0 (the backward's
  convention at the root's kink);
- batch norm on batch statistics, x_hat = (x - mean) r with r = 1 / sqrt(var + eps):
  dx_hat = r (dx - mean(dx) - x_hat mean(x_hat dx)), dy = w dx_hat + dw x_hat + db; on
  running statistics dy = w r dx + dw x_hat + db;
- the blocks by the chain rule through their layers (ReLU passes the tangent where its input
  is > 0, as its backward passes the gradient).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from reference import adaptive, blocks, conv, conv_transpose, normalization, pool
from reference._arguments import as_float_array, flag
from reference.fold import fold, unfold

Tangents = Sequence[np.ndarray | None]


def check_tangents(
    tangents: object,
    primals: Sequence[tuple[str, np.ndarray | None]],
    op: str,
    label: str = "tangents",
) -> list[np.ndarray | None]:
    """The tangents (or, as ``label`` says, grad_grads) as float arrays shaped like their
    primals; a clear error naming ``label`` otherwise."""
    if not isinstance(tangents, (tuple, list)):
        raise TypeError(
            f"{op}: {label} must be a tuple with one array (or None) per differentiable "
            f"argument ({', '.join(name for name, _ in primals)}), got {type(tangents).__name__}"
        )
    if len(tangents) != len(primals):
        raise ValueError(
            f"{op}: {label} has {len(tangents)} entries, expected {len(primals)} "
            f"({', '.join(name for name, _ in primals)})"
        )
    checked: list[np.ndarray | None] = []
    for (name, primal), tangent in zip(primals, tangents, strict=True):
        if tangent is None:
            checked.append(None)
            continue
        if primal is None:
            raise ValueError(f"{op}: {label} has an entry for {name}, which is None")
        array = as_float_array(tangent, f"{label} entry for {name}")
        primal_shape = np.shape(primal)
        if array.shape != primal_shape:
            raise ValueError(
                f"{op}: {label} entry for {name} has shape {array.shape}, expected {primal_shape}"
            )
        checked.append(array)
    return checked


def with_signature(function: Callable[..., Any], like: Callable[..., Any], *leading: str) -> None:
    """Give ``function`` (which takes ``*leading`` then ``like``'s arguments, some through
    *args and **config) ``like``'s signature with the leading parameters first, so that
    introspection and keyword calls see every argument by name."""
    signature = inspect.signature(like)
    first = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in leading]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*first, *signature.parameters.values()], return_annotation=Any
    )


def _plus(*terms: np.ndarray | None) -> np.ndarray:
    present = [t for t in terms if t is not None]
    total = present[0].copy()
    for term in present[1:]:
        total = total + term
    return total


# --- bilinear ops: (input, weight, bias) ---------------------------------------------------


class Bilinear(Protocol):
    """A bilinear op's call checked once (conv.Convolution, conv_transpose.
    TransposedConvolution): its arrays as float arrays, the output's shape, and the forward
    without bias and each adjoint alone on other arrays of the same shapes and dtype."""

    input: np.ndarray
    weight: np.ndarray
    dtype: np.dtype
    output_shape: tuple[int, ...]

    def forward(self, input: np.ndarray, weight: np.ndarray) -> np.ndarray: ...
    def grad_input(self, grad_output: np.ndarray, weight: np.ndarray) -> np.ndarray: ...
    def grad_weight(self, grad_output: np.ndarray, input: np.ndarray) -> np.ndarray: ...


def check_same_dtypes(
    arrays: Sequence[np.ndarray | None], names: Sequence[str], dtype: np.dtype, label: str, op: str
) -> None:
    """Tangents (or grad_grads) in the primals' dtype, as the op's own calls on them need."""
    for array, name in zip(arrays, names, strict=True):
        if array is not None and array.dtype != dtype:
            raise TypeError(
                f"{op}: {label} entry for {name} must have the primals' dtype ({dtype}), got "
                f"{array.dtype}"
            )


def bilinear_tangent(
    planned: Bilinear,
    dx: np.ndarray | None,
    dw: np.ndarray | None,
    db: np.ndarray | None,
) -> np.ndarray:
    """f(dx, w) + f(x, dw) + db, each term as the op computes it (db on zeros, as the op adds
    its bias: 0 + db)."""
    terms: list[np.ndarray | None] = []
    if dx is not None:
        terms.append(planned.forward(dx, planned.weight))
    if dw is not None:
        terms.append(planned.forward(planned.input, dw))
    if db is not None:
        zeros = np.zeros(planned.output_shape, dtype=planned.dtype)
        spatial = len(planned.weight.shape) - 2
        terms.append(zeros + db.reshape(-1, *([1] * spatial)))
    return _plus(*terms) if terms else np.zeros(planned.output_shape, dtype=planned.dtype)


def make_bilinear_jvp(
    forward: Callable[..., np.ndarray], planned: Callable[..., Bilinear] | None = None
) -> Callable[..., np.ndarray]:
    """``planned`` (the op's checked call, from its arguments) computes each term with one
    pass and no primal forward; without it each term is a call of ``forward``."""
    op = forward.__name__

    def jvp(
        tangents: Tangents,
        input: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *args: Any,
        **config: Any,
    ) -> np.ndarray:
        primals = (("input", input), ("weight", weight), ("bias", bias))
        if planned is not None:
            call = planned(input, weight, bias, *args, **config)  # the primals' checks first
            dx, dw, db = check_tangents(tangents, primals, op)
            check_same_dtypes((dx, dw, db), ("input", "weight", "bias"), call.dtype, "tangents", op)
            return bilinear_tangent(call, dx, dw, db)
        out = forward(input, weight, bias, *args, **config)  # the primals' own checks first
        dx, dw, db = check_tangents(tangents, primals, op)
        terms: list[np.ndarray | None] = []
        if dx is not None:
            terms.append(forward(dx, weight, None, *args, **config))
        if dw is not None:
            terms.append(forward(input, dw, None, *args, **config))
        if db is not None:
            terms.append(forward(np.zeros_like(input), np.zeros_like(weight), db, *args, **config))
        return _plus(*terms) if terms else np.zeros_like(out)

    jvp.__name__ = jvp.__qualname__ = f"{op}_jvp"
    with_signature(jvp, forward, "tangents")
    return jvp


# --- linear ops: (input,) -----------------------------------------------------------------


def make_linear_jvp(forward: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    op = forward.__name__

    def jvp(tangents: Tangents, input: np.ndarray, *args: Any, **config: Any) -> np.ndarray:
        out = forward(input, *args, **config)  # the primal's own checks first
        (dx,) = check_tangents(tangents, (("input", input),), op)
        if dx is None:
            return np.zeros_like(out)
        return forward(dx, *args, **config)

    jvp.__name__ = jvp.__qualname__ = f"{op}_jvp"
    with_signature(jvp, forward, "tangents")
    return jvp


# --- max pooling: the tangent at the selected element ---------------------------------------


def gather_selected(tangent: np.ndarray, indices: np.ndarray, dims: int) -> np.ndarray:
    """tangent at each output's flat index within its plane (0 where the index is -1)."""
    lead = tangent.shape[: tangent.ndim - dims]
    planes = tangent.reshape(math.prod(lead), -1)
    flat = indices.reshape(math.prod(lead), -1)
    found = flat >= 0
    picked = np.take_along_axis(planes, np.where(found, flat, 0), axis=1)
    return np.where(found, picked, 0.0).reshape(indices.shape).astype(tangent.dtype)


def make_max_jvp(forward: Callable[..., Any], dims: int) -> Callable[..., np.ndarray]:
    op = forward.__name__

    def jvp(tangents: Tangents, input: np.ndarray, *args: Any, **config: Any) -> np.ndarray:
        # the primal's own checks, then its return_indices's, as the forward checks them
        values, indices = forward(input, *args, **{**config, "return_indices": True})
        if "return_indices" in config:
            flag(config["return_indices"], "return_indices")
        (dx,) = check_tangents(tangents, (("input", input),), op)
        if dx is None:
            return np.zeros_like(values)
        return gather_selected(dx, indices, dims)

    jvp.__name__ = jvp.__qualname__ = f"{op}_jvp"
    with_signature(jvp, forward, "tangents")
    return jvp


# --- lp pooling ----------------------------------------------------------------------------


def lp_parts(
    dims: int, input: np.ndarray, norm_type: float, kernel_size: Any, stride: Any, ceil_mode: bool
) -> tuple[pool.PoolPlan, float, np.ndarray]:
    """The pooling plan, p, and the window sums S of x ** p (batched, output-shaped); the
    forward's checks, in its order (p, then the plan without broadcasting: lp pooling's)."""
    p = pool._check_norm_type(norm_type)
    op = f"lp_pool{dims}d"
    plan = pool.plan_pool(dims, op, input, kernel_size, stride, 0, 1, ceil_mode, False)
    with np.errstate(invalid="ignore", over="ignore"):
        sums = pool._window_sums(plan, np.power(plan.input, p))
    return plan, p, sums


def lp_root_power(sums: np.ndarray, exponent: float) -> np.ndarray:
    """S ** exponent, 0 where S = 0 (for the root's slope S ** (1/p - 1) and its derivative's
    S ** (1/p - 2): the backward's convention at the kink of the root at 0)."""
    if exponent == 0.0:
        return np.ones_like(sums)
    nonzero = sums != 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.where(nonzero, np.power(np.where(nonzero, sums, 1.0), exponent), 0.0)


def make_lp_jvp(dims: int) -> Callable[..., np.ndarray]:
    op = f"lp_pool{dims}d"

    def jvp(
        tangents: Tangents,
        input: np.ndarray,
        norm_type: float,
        kernel_size: Any,
        stride: Any = None,
        ceil_mode: bool = False,
    ) -> np.ndarray:
        plan, p, sums = lp_parts(dims, input, norm_type, kernel_size, stride, ceil_mode)
        (dx,) = check_tangents(tangents, (("input", input),), op)
        if dx is None:
            return plan.finish(np.zeros_like(sums))
        return lp_tangent(plan, p, sums, dx)

    jvp.__name__ = jvp.__qualname__ = f"{op}_jvp"
    return jvp


def lp_tangent(plan: pool.PoolPlan, p: float, sums: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """lp pooling's jvp for the checked tangent ``dx`` of the input (lp_parts' plan, p, S)."""
    tangent = dx[np.newaxis] if plan.unbatched else dx
    with np.errstate(invalid="ignore", over="ignore"):
        inner = pool._window_sums(plan, np.power(plan.input, p - 1.0) * tangent)
        out = lp_root_power(sums, 1.0 / p - 1.0) * inner
    return plan.finish(out.astype(plan.input.dtype))


# --- batch norm ----------------------------------------------------------------------------


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape(-1, *([1] * (ndim - 2)))


def batch_norm_parts(
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(r, x_hat) broadcast against the input: r = 1 / sqrt(var + eps) per channel."""
    if training:
        mean, var = normalization._statistics(input)
    else:
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
    r = _per_channel(1.0 / np.sqrt(var + eps), input.ndim)
    return r, (input - _per_channel(mean, input.ndim)) * r


def channel_mean(values: np.ndarray) -> np.ndarray:
    """Mean over batch and space, kept broadcastable against the input."""
    return normalization.mean_over(values, (0, *range(2, values.ndim)), keepdims=True)


def normalized_tangent(dx: np.ndarray, r: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """d x_hat of batch statistics: r (dx - mean(dx) - x_hat mean(x_hat dx))."""
    return r * (dx - channel_mean(dx) - x_hat * channel_mean(x_hat * dx))


def batch_norm_jvp(
    tangents: Tangents,
    input: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> np.ndarray:
    """Tangent of batch_norm's output for tangents of (input, weight, bias); the running
    statistics are buffers, not differentiated (and left unchanged)."""
    input = normalization._check(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    dx, dw, db = check_tangents(
        tangents, (("input", input), ("weight", weight), ("bias", bias)), "batch_norm"
    )
    if input.shape[0] == 0:
        return np.zeros_like(input) if dx is None else dx.copy()
    r, x_hat = batch_norm_parts(input, running_mean, running_var, training, eps)
    w = 1.0 if weight is None else _per_channel(weight, input.ndim)
    out = np.zeros_like(input)
    if dx is not None:
        out = out + w * (normalized_tangent(dx, r, x_hat) if training else r * dx)
    if dw is not None:
        out = out + _per_channel(dw, input.ndim) * x_hat
    if db is not None:
        out = out + _per_channel(db, input.ndim)
    return out.astype(input.dtype)


# --- blocks ---------------------------------------------------------------------------------


def depthwise_separable_conv_jvp(
    tangents: Tangents,
    input: np.ndarray,
    depthwise_weight: np.ndarray,
    pointwise_weight: np.ndarray,
    depthwise_bias: np.ndarray | None = None,
    pointwise_bias: np.ndarray | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> np.ndarray:
    """The chain rule through the depthwise then the pointwise convolution."""
    # the arguments' own checks, under their own names (the depthwise's knobs by its call)
    channels = blocks._check_separable(
        input, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias
    )
    depthwise = {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels}
    hidden = conv.conv2d(input, depthwise_weight, depthwise_bias, **depthwise)
    input = as_float_array(input, "input")
    primals = (
        ("input", input),
        ("depthwise_weight", depthwise_weight),
        ("pointwise_weight", pointwise_weight),
        ("depthwise_bias", depthwise_bias),
        ("pointwise_bias", pointwise_bias),
    )
    dx, d_dw, d_pw, d_db, d_pb = check_tangents(tangents, primals, "depthwise_separable_conv")
    d_hidden = conv2d_jvp([dx, d_dw, d_db], input, depthwise_weight, depthwise_bias, **depthwise)
    return conv2d_jvp([d_hidden, d_pw, d_pb], hidden, pointwise_weight, pointwise_bias)


def relu_mask(values: np.ndarray) -> np.ndarray:
    """Where ReLU passes derivatives: its input is > 0 (torch's threshold_backward)."""
    return values > 0


def residual_tangents(
    tangents: Tangents,
    arrays: Sequence[np.ndarray | None],
    values: Any,
    stride: int,
    eps: float,
) -> dict[str, np.ndarray]:
    """The tangent of every intermediate of a residual block (names of blocks._ResidualPass,
    plus 'sum' for body + skip and 'output')."""
    (x, w1, g1, b1, w2, g2, b2, ws, gs, bs) = arrays
    t = check_tangents(
        tangents,
        tuple(zip(RESIDUAL_ARRAYS, arrays, strict=True)),
        "residual_block",
    )
    tx, tw1, tg1, tb1, tw2, tg2, tb2, tws, tgs, tbs = t
    out: dict[str, np.ndarray] = {}
    out["a1"] = conv2d_jvp([tx, tw1, None], x, w1, None, stride, 1)
    out["b1"] = batch_norm_jvp([out["a1"], tg1, tb1], values.a1, None, None, g1, b1, True, 0, eps)
    out["hidden"] = np.where(relu_mask(values.b1), out["b1"], 0.0)
    out["a2"] = conv2d_jvp([out["hidden"], tw2, None], values.hidden, w2, None, 1, 1)
    out["body"] = batch_norm_jvp([out["a2"], tg2, tb2], values.a2, None, None, g2, b2, True, 0, eps)
    if values.a_s is None:
        out["skip"] = np.zeros_like(values.skip) if tx is None else tx
    else:
        out["a_s"] = conv2d_jvp([tx, tws, None], x, ws, None, stride)
        out["skip"] = batch_norm_jvp(
            [out["a_s"], tgs, tbs], values.a_s, None, None, gs, bs, True, 0, eps
        )
    out["sum"] = out["body"] + out["skip"]
    out["output"] = np.where(relu_mask(values.body + values.skip), out["sum"], 0.0)
    return out


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


def residual_block_jvp(
    tangents: Tangents,
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
) -> np.ndarray:
    """The chain rule through conv, batch norm (batch statistics), ReLU and the shortcut."""
    # the arguments' own checks, under their own names, then the forward values
    values = blocks._residual_forward(
        input, conv1_weight, bn1_weight, bn1_bias, conv2_weight, bn2_weight, bn2_bias,
        shortcut_weight, shortcut_bn_weight, shortcut_bn_bias, stride, eps,
    )  # fmt: skip
    arrays = (
        as_float_array(input, "input"),
        conv1_weight,
        bn1_weight,
        bn1_bias,
        conv2_weight,
        bn2_weight,
        bn2_bias,
        shortcut_weight,
        shortcut_bn_weight,
        shortcut_bn_bias,
    )
    return residual_tangents(tangents, arrays, values, stride, eps)["output"]


def planned_conv(dims: int) -> Callable[..., Bilinear]:
    return functools.partial(conv.Convolution.checked, dims)


def planned_conv_transpose(dims: int) -> Callable[..., Bilinear]:
    return functools.partial(conv_transpose.TransposedConvolution.checked, dims)


conv1d_jvp = make_bilinear_jvp(conv.conv1d, planned_conv(1))
conv2d_jvp = make_bilinear_jvp(conv.conv2d, planned_conv(2))
conv3d_jvp = make_bilinear_jvp(conv.conv3d, planned_conv(3))
conv_transpose1d_jvp = make_bilinear_jvp(conv_transpose.conv_transpose1d, planned_conv_transpose(1))
conv_transpose2d_jvp = make_bilinear_jvp(conv_transpose.conv_transpose2d, planned_conv_transpose(2))
conv_transpose3d_jvp = make_bilinear_jvp(conv_transpose.conv_transpose3d, planned_conv_transpose(3))
patch_embedding_jvp = make_bilinear_jvp(blocks.patch_embedding)
avg_pool1d_jvp = make_linear_jvp(pool.avg_pool1d)
avg_pool2d_jvp = make_linear_jvp(pool.avg_pool2d)
avg_pool3d_jvp = make_linear_jvp(pool.avg_pool3d)
adaptive_avg_pool1d_jvp = make_linear_jvp(adaptive.adaptive_avg_pool1d)
adaptive_avg_pool2d_jvp = make_linear_jvp(adaptive.adaptive_avg_pool2d)
adaptive_avg_pool3d_jvp = make_linear_jvp(adaptive.adaptive_avg_pool3d)
unfold_jvp = make_linear_jvp(unfold)
fold_jvp = make_linear_jvp(fold)
max_pool1d_jvp = make_max_jvp(pool.max_pool1d, 1)
max_pool2d_jvp = make_max_jvp(pool.max_pool2d, 2)
max_pool3d_jvp = make_max_jvp(pool.max_pool3d, 3)
adaptive_max_pool1d_jvp = make_max_jvp(adaptive.adaptive_max_pool1d, 1)
adaptive_max_pool2d_jvp = make_max_jvp(adaptive.adaptive_max_pool2d, 2)
adaptive_max_pool3d_jvp = make_max_jvp(adaptive.adaptive_max_pool3d, 3)
lp_pool1d_jvp = make_lp_jvp(1)
lp_pool2d_jvp = make_lp_jvp(2)
lp_pool3d_jvp = make_lp_jvp(3)
