"""The calls made before a failing one in the same process, written out as repro code.

A result that depends on what ran before it (a stale buffer, a cache keyed on the wrong
thing, memory a kernel never wrote) does not reproduce alone in a fresh process. The
isolation's helpers and the in-process runner remember the last few calls of their process
(conformance.implementations.isolation.HISTORY); each is written here with its arrays as
literals and the adapter's own repro lines, so that the repro can replay the sequence first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import dtype_name
from conformance.implementations import DIRECTION_SUFFIXES
from conformance.implementations.calls import Call
from conformance.judge import repro
from conformance.judge.derivatives import DERIVATIVE_DIRECTIONS, output_names

DIRECTIONS = {
    "_double_backward": "double_backward",
    "_backward": "backward",
    "_jvp": "jvp",
    "": "forward",
}


def _op_and_direction(attribute: str) -> tuple[str, str]:
    for suffix in DIRECTION_SUFFIXES:
        if attribute.endswith(suffix):
            return attribute.removesuffix(suffix), DIRECTIONS[suffix]
    return attribute, "forward"


def _dtype(args: Sequence[Any]) -> str:
    for value in args:
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return dtype_name(value.dtype)
    return "float64"


def call_code(index: int, call: Call, implementation: Any) -> list[str]:
    """One earlier call as a function that makes it, then its invocation; what it raises is
    printed, not fatal (an invalid call is among them, or a call that raised anyway)."""
    from conformance.catalogue import CATALOGUE

    op, direction = _op_and_direction(call.attribute)
    spec = next((s for s in CATALOGUE if s.name == op), None)
    if spec is None:
        return [f"# call {index}: {call.attribute} (not a catalogue op: not replayed)"]
    args = list(call.args)
    leading: list[str] = []
    if direction in ("backward", "double_backward"):
        leading.append("grad_output")
    if direction in DERIVATIVE_DIRECTIONS:
        leading.append("tangents" if direction == "jvp" else "grad_grads")
    dtype = _dtype(args)
    body = []
    for name in leading:
        value = args.pop(0)
        if isinstance(value, tuple):
            items = "".join(f"{repro.array_code(a, dtype)}, " for a in value)
            body.append(f"{name} = ({items})")
        else:
            body.append(f"{name} = {repro.array_code(value, dtype)}")
    if "grad_output" not in leading:
        body.append("grad_output = None")
    names = spec.array_args[: len(args)]
    for name, value in zip(names, args, strict=True):
        code = repro.array_code(value, dtype) if isinstance(value, np.ndarray) else repr(value)
        body.append(f"{name} = {code}")
    body.append(f"config = {dict(call.kwargs)!r}")
    if direction == "forward":
        outputs = (*spec.outputs(call.kwargs), *spec.mutated)
    elif direction == "backward":
        outputs = spec.gradient_names
    else:
        outputs = output_names(spec, direction)
    mode: bool | str = direction if direction in DERIVATIVE_DIRECTIONS else direction == "backward"
    body += implementation.repro_lines(op, call.kwargs, names, outputs, mode, dtype)
    function = f"earlier_call_{index}"
    return [
        f"def {function}():  # {call.attribute}",
        *["    " + line if line else "" for line in body],
        "",
        "",
        "try:",
        f"    {function}()",
        "except Exception as error:",
        f"    print('earlier call {index} raised', type(error).__name__, error)",
        "",
    ]


def history_code(calls: Sequence[Call], implementation: Any) -> str:
    """The calls, oldest first, as code that replays them."""
    lines = [
        "# The calls made before it in the same process, oldest first, replayed in order.",
        "import numpy as np",
        "",
    ]
    for index, call in enumerate(calls, 1):
        try:
            lines += call_code(index, call, implementation)
        except Exception as error:  # a call that cannot be written out is named instead
            lines.append(f"# call {index}: {call.attribute} could not be written out: {error}")
    return "\n".join(lines) + "\n"
