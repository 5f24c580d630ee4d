"""Standalone repro snippets: numpy plus the implementation under test, copy-paste runnable.

Arrays are written as exact literals (repr of each value as a Python float is exact for every
float16/32/64 value), so the snippet replays the very inputs the implementation saw. The
implementation's adapter supplies the lines that compute ``got`` (a dict of NumPy arrays per
output name) from the arrays, ``grad_output`` and ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _literal(value: float) -> str:
    if np.isnan(value):
        return "np.nan"
    if np.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


def array_code(array: np.ndarray | None, dtype: str) -> str:
    """A NumPy literal of ``array``; bfloat16 values are written in float32, which holds
    each of them exactly (NumPy has no bfloat16; the call lines convert)."""
    if array is None:
        return "None"
    dtype = "float32" if dtype == "bfloat16" else dtype
    if array.dtype.kind in "iub":
        body = ", ".join(str(int(v)) for v in array.ravel())
        return f"np.array([{body}], dtype=np.{dtype}).reshape({tuple(array.shape)})"
    body = ", ".join(_literal(v) for v in array.astype(np.float64).ravel())
    return f"np.array([{body}], dtype=np.{dtype}).reshape({tuple(array.shape)})"


def _torch_derivative_lines(
    lines: list[str],
    call: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    direction: str,
    wanted: Sequence[bool],
    to: str,
) -> list[str]:
    """jvp: forward-mode AD with dual tensors; double_backward: torch.autograd.grad twice."""
    graded = [a for a, grad in zip(array_names, wanted, strict=False) if grad]
    tensor = f"lambda a: None if a is None else torch.from_numpy(a){to}"
    lines.append(f"as_tensor = {tensor}")
    lines.append("call_config = {k: v for k, v in config.items() if k != 'return_indices'}")
    if direction == "jvp":
        lines.append("import torch.autograd.forward_ad as fwAD")
        lines.append("fwAD.enter_dual_level()")
        for name in array_names:
            lines.append(f"{name} = as_tensor({name})")
        for index, name in enumerate(graded):
            lines.append(
                f"{name} = {name} if {name} is None or tangents[{index}] is None else "
                f"fwAD.make_dual({name}, as_tensor(tangents[{index}]))"
            )
        lines.append(f"out = {call.replace('**config', '**call_config')}")
        lines.append("first = out[0] if isinstance(out, tuple) else out")
        lines.append(f"got = {{{output_names[0]!r}: as_numpy(fwAD.unpack_dual(first).tangent)}}")
        lines.append("fwAD.exit_dual_level()")
        return lines
    for name in array_names:
        grad = name in graded
        lines.append(
            f"{name} = None if {name} is None else as_tensor({name}).requires_grad_({grad})"
        )
    lines.append("grad_output = as_tensor(grad_output).requires_grad_(True)")
    lines.append(f"out = {call.replace('**config', '**call_config')}")
    lines.append("first_out = out[0] if isinstance(out, tuple) else out")
    lines.append(f"graded = [{', '.join(graded)}]")
    lines.append("present = [t for t in graded if t is not None]")
    lines.append("first = torch.autograd.grad(first_out, present, grad_output, create_graph=True)")
    lines.append("cotangents = [as_tensor(v) for v, t in zip(grad_grads, graded) if t is not None]")
    lines.append(
        "second = iter(torch.autograd.grad(first, [*present, grad_output], cotangents, "
        "allow_unused=True, materialize_grads=True))"
    )
    lines.append(
        "values = [None if t is None else as_numpy(next(second)) for t in graded]"
        " + [as_numpy(next(second))]"
    )
    lines.append(f"got = dict(zip({tuple(output_names)!r}, values))")
    return lines


def torch_lines(
    call: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    backward: bool | str,
    differentiable: Sequence[bool] | None = None,
    dtype: str = "float64",
) -> list[str]:
    """Compute ``got`` with torch: tensors from the arrays, ``call`` giving ``out``.
    ``backward``: False (forward), True (backward), or 'jvp' or 'double_backward'."""
    lines = ["import torch", ""]
    to = ".to(torch.bfloat16)" if dtype == "bfloat16" else ""
    if dtype == "bfloat16":  # NumPy has no bfloat16: float32 holds each value exactly
        lines.append(
            "as_numpy = lambda t: (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy()"
        )
    else:
        lines.append("as_numpy = lambda t: t.detach().numpy()")
    wanted = list(differentiable or [True] * len(array_names))
    if isinstance(backward, str):
        return _torch_derivative_lines(lines, call, array_names, output_names, backward, wanted, to)
    for name, grad in zip(array_names, wanted, strict=False):
        lines.append(
            f"{name} = None if {name} is None else "
            f"torch.from_numpy({name}){to}.requires_grad_({backward and grad})"
        )
    lines.append(f"out = {call}")
    lines.append("outputs = out if isinstance(out, tuple) else (out,)")
    if not backward:
        lines.append(f"got = dict(zip({tuple(output_names)!r}, (as_numpy(o) for o in outputs)))")
        # arrays updated in place (running statistics) are outputs under their own names
        return lines + [f"got[{n!r}] = as_numpy({n})" for n in array_names if n in output_names]
    lines.append(f"outputs[0].backward(torch.from_numpy(grad_output){to})")
    graded = [a for a, grad in zip(array_names, wanted, strict=False) if grad]
    items = ", ".join(
        f"{g!r}: None if {a} is None else as_numpy({a}.grad)"
        for a, g in zip(graded, output_names, strict=False)
    )
    return [*lines, f"got = {{{items}}}"]


def module_lines(
    module: str,
    attribute: str,
    op: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    backward: bool | str,
    dtype: str = "float64",
) -> list[str]:
    """Compute ``got`` by calling a user's implementation, importable as module[:attribute]
    (``backward``: False, True, or 'jvp' or 'double_backward')."""
    lines = [
        "import importlib",
        "import os",
        "import sys",
        "",
        "sys.path.insert(0, os.getcwd())  # run this where the implementation imports",
        f"impl = importlib.import_module({module!r})",
    ]
    if dtype == "bfloat16":
        lines += ["import ml_dtypes", ""]
        lines += [
            f"{name} = None if {name} is None else {name}.astype(ml_dtypes.bfloat16)"
            for name in (*array_names, "grad_output")
        ]
    if attribute:
        lines.append(f"impl = getattr(impl, {attribute!r})")
    arguments = ", ".join(array_names)
    if backward == "jvp":
        lines.append(f"out = impl.{op}_jvp(tangents, {arguments}, **config)")
    elif backward == "double_backward":
        lines.append(
            f"out = impl.{op}_double_backward(grad_output, grad_grads, {arguments}, **config)"
        )
    elif backward:
        lines.append(f"out = impl.{op}_backward(grad_output, {arguments}, **config)")
    else:
        lines.append(f"out = impl.{op}({arguments}, **config)")
    lines.append("outputs = out if isinstance(out, tuple) else (out,)")
    lines.append(f"got = dict(zip({tuple(output_names)!r}, outputs))")
    if backward:
        return lines
    return lines + [f"got[{n!r}] = {n}" for n in array_names if n in output_names]


def snippet(
    dtype: str,
    arrays: Mapping[str, np.ndarray | None],
    config: Mapping[str, Any],
    grad_output: np.ndarray | None,
    call_lines: Sequence[str],
    expected: Mapping[str, np.ndarray],
    bounds: Mapping[str, np.ndarray],
    extra: tuple[str, Sequence[np.ndarray | None]] | None = None,
) -> str:
    """A script that recomputes the outputs and prints each one's error against the oracle.

    ``expected`` is the oracle per output name; ``bounds`` the error bound of each output not
    compared bitwise; ``extra`` the tangents or grad_grads of the derivative directions, as
    (name, one array or None per differentiable argument).
    """
    lines = ["import numpy as np", ""]
    for name, array in arrays.items():
        lines.append(f"{name} = {array_code(array, dtype)}")
    lines.append(f"grad_output = {array_code(grad_output, dtype)}")
    if extra is not None:
        items = "".join(f"{array_code(a, dtype)}, " for a in extra[1])
        lines.append(f"{extra[0]} = ({items})")
    lines.append(f"config = {dict(config)!r}")
    lines += call_lines
    lines.append("")
    for name in expected:
        lines.append(f"expected = {array_code(expected[name], str(expected[name].dtype))}")
        lines.append(f"actual = np.asarray(got[{name!r}])")
        if name not in bounds:  # compared bitwise, NaN-aware
            lines.append(
                "same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))"
                if np.issubdtype(expected[name].dtype, np.floating)
                else "same = actual == expected"
            )
            lines.append(f"print({name!r}, 'bitwise equal:', bool(np.all(same)))")
            continue
        lines.append(f"bound = {array_code(bounds[name], 'float64')}")
        # a NaN or an infinity out of place is an error nanmax would not show
        lines.append(
            f"print({name!r}, 'NaN and inf where expected:', actual.shape == expected.shape and "
            "bool(np.array_equal(np.isnan(actual), np.isnan(expected)) and "
            "np.array_equal(actual[np.isinf(expected)], expected[np.isinf(expected)])))"
        )
        lines.append("error = np.abs(actual.astype(np.float64) - expected)")
        lines.append(
            "with np.errstate(divide='ignore', invalid='ignore'):\n"
            f"    print({name!r}, 'max |error|:', np.nanmax(error), "
            "'worst error / bound:', np.nanmax(error / bound), '(> 1 is a discrepancy)')"
        )
    return "\n".join(lines) + "\n"
