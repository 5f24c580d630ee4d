"""Central-difference gradient checking, the notebook's section 9 generalized to any op.

For an op f and a fixed grad_output g, the scalar L(args) = <f(*args), g> has
dL/d(args[i]) = the i-th gradient that ``<op>_backward(g, *args)`` returns. Each element is
estimated as (L(a + h e) - L(a - h e)) / (2 h): truncation error O(h^2) times L's third
derivative, rounding error O(u * |L| / h), about 1e-10 * |L| for the step h = 1e-6 in
float64. The op's keyword arguments travel as one mapping, so none of them (batch norm's
``eps``, say) can be taken for one of the checker's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def numerical_gradient(
    function: Callable[..., np.ndarray],
    args: Sequence[Any],
    grad_output: np.ndarray,
    wrt: int,
    step: float = 1e-6,
    kwargs: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Central-difference gradient of <function(*args, **kwargs), grad_output> in args[wrt]."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    options = dict(kwargs or {})
    values = list(args)
    target = np.array(values[wrt], dtype=np.float64, copy=True)
    values[wrt] = target
    flat = target.reshape(-1)
    gradient = np.empty_like(flat)

    def loss() -> float:
        return float(np.vdot(function(*values, **options), grad_output))

    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + step
        plus = loss()
        flat[index] = saved - step
        minus = loss()
        flat[index] = saved
        gradient[index] = (plus - minus) / (2 * step)
    return gradient.reshape(target.shape)


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
    options = dict(kwargs or {})
    analytic = backward(grad_output, *args, **options)
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
