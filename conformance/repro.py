"""Standalone repro snippets: numpy + torch (or the user's module) only, copy-paste runnable.

Arrays are written as exact literals (repr of each value as a Python float is exact for every
float16/32/64 value), so the snippet replays the very inputs the implementation saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _literal(value: float) -> str:
    if np.isnan(value):
        return "np.nan"
    if np.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


def array_code(array: np.ndarray | None, dtype: str) -> str:
    if array is None:
        return "None"
    body = ", ".join(_literal(v) for v in array.astype(np.float64).ravel())
    return f"np.array([{body}], dtype=np.{dtype}).reshape({tuple(array.shape)})"


def snippet(
    op: str,
    direction: str,
    dtype: str,
    arrays: Mapping[str, np.ndarray | None],
    config: Mapping[str, Any],
    call_code: str,
    grad_output: np.ndarray | None,
    expected: Mapping[str, np.ndarray],
    bounds: Mapping[str, np.ndarray],
) -> str:
    """A script that recomputes ``op`` with torch and prints its error against the oracle.

    ``call_code`` is an expression of tensors named like the array arguments and a dict
    ``config``. ``expected`` and ``bounds`` are the float64 oracle and the error bound per
    output (output, or grad_<argument>).
    """
    lines = ["import numpy as np", "import torch", ""]
    for name, array in arrays.items():
        lines.append(f"{name} = {array_code(array, dtype)}")
    lines.append(f"config = {dict(config)!r}")
    grad = direction == "backward"
    for name in arrays:
        lines.append(
            f"{name} = None if {name} is None else "
            f"torch.from_numpy({name}).requires_grad_({grad})"
        )
    lines.append(f"out = {call_code}")
    if grad:
        assert grad_output is not None
        lines.append(f"out.backward(torch.from_numpy({array_code(grad_output, dtype)}))")
        got = {f"grad_{name}": f"{name}.grad" for name in arrays if f"grad_{name}" in expected}
    else:
        got = {"output": "out"}
    for name, expression in got.items():
        lines.append(f"expected = {array_code(expected[name], 'float64')}")
        lines.append(f"bound = {array_code(bounds[name], 'float64')}")
        lines.append(f"error = np.abs({expression}.detach().numpy().astype(np.float64) - expected)")
        lines.append(
            f"print({name!r}, 'max |error|:', error.max(), "
            "'worst error / bound:', (error / bound).max(), '(> 1 is a discrepancy)')"
        )
    return "\n".join(lines) + "\n"
