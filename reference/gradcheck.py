"""Central-difference gradient checking, the notebook's section 9 generalized to any op.

For an op f and a fixed grad_output g, the scalar L(args) = <f(*args), g> has
dL/d(args[i]) = the i-th gradient that ``<op>_backward(g, *args)`` returns. Each element is
estimated as (L(a + h e) - L(a - h e)) / (2 h): truncation error O(h^2) times L's third
derivative, rounding error O(u * |L| / h), about 1e-10 * |L| for the step h = 1e-6 in
float64. The op's keyword arguments travel as one mapping, so none of them (batch norm's
``eps``, say) can be taken for one of the checker's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from reference._arguments import as_float_array, describe, int_arg, is_sequence, real


def numerical_gradient(
    function: Callable[..., np.ndarray],
    args: Sequence[Any],
    grad_output: np.ndarray,
    wrt: int,
    step: float = 1e-6,
    kwargs: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Central-difference gradient of <function(*args, **kwargs), grad_output> in args[wrt]."""
    options = _check_call(function, "function", args, kwargs)
    wrt = _check_index(wrt, "wrt", len(args))
    step = _check_tolerance(step, "step", positive=True)
    grad = as_float_array(grad_output, "grad_output")
    values = list(args)
    target = np.array(as_float_array(values[wrt], f"args[{wrt}]"), dtype=np.float64, copy=True)
    values[wrt] = target
    flat = target.reshape(-1)
    gradient = np.empty_like(flat)
    output_shape = np.shape(function(*values, **options))
    if output_shape != grad.shape:  # vdot would flatten both and pair the wrong elements
        raise ValueError(
            f"grad_output must have the function's output shape {output_shape}, got {grad.shape}"
        )

    def loss() -> float:
        return float(np.vdot(function(*values, **options), grad))

    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + step
        plus = loss()
        flat[index] = saved - step
        minus = loss()
        flat[index] = saved
        gradient[index] = (plus - minus) / (2 * step)
    return gradient.reshape(target.shape)


def _check_call(function: object, name: str, args: object, kwargs: object) -> dict[str, Any]:
    """A callable, a sequence of positional arguments and a mapping of keyword arguments
    (or None); the keyword arguments as a dict."""
    if not callable(function):
        raise TypeError(f"{name} must be callable, got {describe(function)}")
    if not is_sequence(args):
        raise TypeError(f"args must be a sequence of the op's arguments, got {describe(args)}")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise TypeError(
            f"kwargs must be a mapping of argument names or None, got {describe(kwargs)}"
        )
    return dict(kwargs)


def _check_index(index: object, name: str, count: int) -> int:
    """An index into the ``count`` positional arguments (never a bool: True is not 1 here)."""
    position = int_arg(index, name)
    if not 0 <= position < count:
        raise ValueError(f"{name} must index args (0 to {count - 1}), got {position}")
    return position


def _check_indices(differentiable: object, args: Sequence[Any]) -> list[int]:
    """Indices into args (a sequence of them, each checked as by _check_index)."""
    if not is_sequence(differentiable):
        raise TypeError(
            "differentiable must be a sequence of indices into args, got "
            f"{describe(differentiable)}"
        )
    return [
        _check_index(i, "differentiable", len(args)) for i in cast(Sequence[Any], differentiable)
    ]


def _check_tolerance(value: object, name: str, positive: bool = False) -> float:
    number = real(value, name)
    if not (number > 0 if positive else number >= 0) or number == math.inf:
        rule = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be {rule} and finite, got {value!r}")
    return number


@dataclass(frozen=True)
class GradientComparison:
    """One argument's analytic gradient against its central-difference estimate."""

    argument: int
    analytic: np.ndarray
    numerical: np.ndarray
    max_abs_error: float
    ok: bool


def check_gradients(
    function: Callable[..., np.ndarray],
    backward: Callable[..., Sequence[np.ndarray | None]],
    args: Sequence[Any],
    grad_output: np.ndarray,
    differentiable: Sequence[int],
    kwargs: Mapping[str, Any] | None = None,
    step: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> list[GradientComparison]:
    """Compare ``backward(grad_output, *args, **kwargs)`` with central differences.

    ``backward`` returns one gradient per index in ``differentiable`` (None for an argument
    that is None, such as an absent bias). The defaults leave about three orders of
    magnitude above the truncation and rounding errors for float64 data of order one.
    """
    options = _check_call(function, "function", args, kwargs)
    _check_call(backward, "backward", args, kwargs)
    differentiable = _check_indices(differentiable, args)
    step = _check_tolerance(step, "step", positive=True)
    atol = _check_tolerance(atol, "atol")
    rtol = _check_tolerance(rtol, "rtol")
    as_float_array(grad_output, "grad_output")
    analytic = backward(grad_output, *args, **options)
    if not isinstance(analytic, (tuple, list)):
        raise TypeError(
            f"backward must return a tuple of gradients, one per differentiable argument, got "
            f"{type(analytic).__name__}"
        )
    if len(analytic) != len(differentiable):
        raise ValueError(
            f"backward returned {len(analytic)} gradients for {len(differentiable)} arguments"
        )
    comparisons = []
    for argument, gradient in zip(differentiable, analytic, strict=True):
        if args[argument] is None:
            if gradient is not None:
                raise ValueError(f"backward returned a gradient for argument {argument}, None")
            continue
        if gradient is None or gradient.shape != np.shape(args[argument]):
            raise ValueError(
                f"backward's gradient for argument {argument} must have shape "
                f"{np.shape(args[argument])}, got "
                f"{None if gradient is None else gradient.shape}"
            )
        numerical = numerical_gradient(function, args, grad_output, argument, step, options)
        error = np.abs(gradient - numerical)
        ok = bool(np.all(error <= atol + rtol * np.abs(numerical)))
        max_error = float(error.max()) if error.size else 0.0
        comparisons.append(GradientComparison(argument, gradient, numerical, max_error, ok))
    return comparisons


def _moved(args: Sequence[Any], direction: Mapping[int, np.ndarray], scale: float) -> list[Any]:
    """args with args[i] + scale * direction[i] for each i in direction."""
    return [
        np.asarray(a, dtype=np.float64) + scale * direction[i] if i in direction else a
        for i, a in enumerate(args)
    ]


def _within(analytic: np.ndarray, numerical: np.ndarray, atol: float, rtol: float) -> bool:
    return bool(np.all(np.abs(analytic - numerical) <= atol + rtol * np.abs(numerical)))


def check_jvp(
    function: Callable[..., Any],
    jvp: Callable[..., np.ndarray],
    args: Sequence[Any],
    tangents: Sequence[np.ndarray | None],
    differentiable: Sequence[int],
    kwargs: Mapping[str, Any] | None = None,
    step: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> GradientComparison:
    """``jvp(tangents, *args, **kwargs)`` against the directional central difference
    (f(a + h t) - f(a - h t)) / (2 h) of the function's first output; ``argument`` is -1.

    The defaults are check_gradients': central differences with h = 1e-6 err by O(h^2)
    truncation plus about 1e-10 |f| rounding in float64, three orders of magnitude below
    atol + rtol |estimate| for data of order one."""
    options = _check_call(function, "function", args, kwargs)
    _check_call(jvp, "jvp", args, kwargs)
    differentiable = _check_indices(differentiable, args)
    if not is_sequence(tangents) or len(tangents) != len(differentiable):
        raise TypeError(
            "tangents must be a sequence with one array (or None) per differentiable argument, "
            f"got {describe(tangents)}"
        )
    step = _check_tolerance(step, "step", positive=True)
    atol = _check_tolerance(atol, "atol")
    rtol = _check_tolerance(rtol, "rtol")
    direction = {
        i: np.asarray(t, dtype=np.float64)
        for i, t in zip(differentiable, tangents, strict=True)
        if t is not None
    }

    def first(values: Sequence[Any]) -> np.ndarray:
        out = function(*values, **options)
        return np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64)

    numerical = (first(_moved(args, direction, step)) - first(_moved(args, direction, -step))) / (
        2 * step
    )
    analytic = np.asarray(jvp(tangents, *args, **options))
    if analytic.shape != numerical.shape:
        raise ValueError(f"jvp's shape {analytic.shape} is not the output's {numerical.shape}")
    error = float(np.abs(analytic - numerical).max()) if analytic.size else 0.0
    ok = _within(analytic, numerical, atol, rtol)
    return GradientComparison(-1, analytic, numerical, error, ok)


def check_double_backward(
    backward: Callable[..., Sequence[np.ndarray | None]],
    double_backward: Callable[..., Sequence[np.ndarray | None]],
    args: Sequence[Any],
    grad_output: np.ndarray,
    grad_grads: Sequence[np.ndarray | None],
    differentiable: Sequence[int],
    kwargs: Mapping[str, Any] | None = None,
    step: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> list[GradientComparison]:
    """``double_backward(grad_output, grad_grads, *args, **kwargs)`` against central
    differences of L(args, g) = sum_i <grad_grads[i], backward(g, *args)[i]>: in each
    differentiable argument element by element, and in grad_output (``argument`` -1).

    The defaults are check_gradients' (same step, same estimate of L, so the same error
    margin of about three orders of magnitude for float64 data of order one)."""
    options = _check_call(backward, "backward", args, kwargs)
    _check_call(double_backward, "double_backward", args, kwargs)
    differentiable = _check_indices(differentiable, args)
    if not is_sequence(grad_grads) or len(grad_grads) != len(differentiable):
        raise TypeError(
            "grad_grads must be a sequence with one array (or None) per differentiable "
            f"argument, got {describe(grad_grads)}"
        )
    step = _check_tolerance(step, "step", positive=True)
    atol = _check_tolerance(atol, "atol")
    rtol = _check_tolerance(rtol, "rtol")
    grad_output = as_float_array(grad_output, "grad_output")
    analytic = double_backward(grad_output, grad_grads, *args, **options)
    if len(analytic) != len(differentiable) + 1:
        raise ValueError(
            f"double_backward returned {len(analytic)} arrays for {len(differentiable)} "
            "arguments and grad_output"
        )

    def loss(values: Sequence[Any], g: np.ndarray) -> np.ndarray:
        first = backward(g, *values, **options)
        total = 0.0
        for v, d in zip(grad_grads, first, strict=True):
            if v is not None:
                total += float(np.vdot(v, d))
        return np.asarray(total)

    comparisons = []
    targets = [*differentiable, -1]
    for argument, gradient in zip(targets, analytic, strict=True):
        if argument >= 0 and args[argument] is None:
            continue
        if argument < 0:
            numerical = numerical_gradient(
                lambda g: np.asarray(loss(args, g)), [grad_output], np.ones(()), 0, step
            )
        else:
            numerical = numerical_gradient(
                lambda *values: np.asarray(loss(values, grad_output)),
                args,
                np.ones(()),
                argument,
                step,
            )
        if gradient is None or np.shape(gradient) != numerical.shape:
            raise ValueError(
                f"double_backward's array for argument {argument} must have shape "
                f"{numerical.shape}, got {None if gradient is None else np.shape(gradient)}"
            )
        error = np.abs(gradient - numerical)
        ok = _within(np.asarray(gradient), numerical, atol, rtol)
        max_error = float(error.max()) if error.size else 0.0
        comparisons.append(
            GradientComparison(argument, np.asarray(gradient), numerical, max_error, ok)
        )
    return comparisons
