"""The lines of a tinygrad repro snippet: the op's function from tinygrad_ops (its source and
its helpers', verbatim), the exact hand-off of the arrays, and the call; NumPy and tinygrad
only. The lines may run inside a function body (a history-dependent repro replays earlier
calls that way), so they hold no ``from __future__`` import."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any

from conformance.implementations import tinygrad_ops


def sources(function: Callable[..., Any]) -> list[str]:
    """The source of ``function`` and of every function of tinygrad_ops it uses,
    dependencies first (so that a snippet defines them all)."""
    found: dict[str, str] = {}

    def names_used(code: types.CodeType) -> set[str]:
        used = set(code.co_names)
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                used |= names_used(constant)
        return used

    def visit(target: Any) -> None:
        for name in sorted(names_used(target.__code__)):
            value = getattr(tinygrad_ops, name, None)
            if name in found or not inspect.isfunction(value):
                continue
            if inspect.getmodule(value) is tinygrad_ops:
                found[name] = ""  # mark before recursing: no cycles
                visit(value)
                found[name] = inspect.getsource(value)

    visit(function)
    found[function.__name__] = inspect.getsource(function)
    return "\n".join(found.values()).splitlines()


# float32 -> bfloat16 -> float32, round to nearest even, on the bits (NumPy has no bfloat16)
ROUND_TO_BFLOAT16 = (
    "np.where(np.isnan(f), np.float32(np.nan), ((((b := f.view(np.uint32).astype(np.uint64)) "
    "+ 0x7FFF + ((b >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32))"
)


def hand_off_lines(dtype: str, round_trip: bool = False) -> list[str]:
    """to_tensor / as_numpy: exact both ways. A bfloat16 snippet holds its values as float32
    (each exactly): the top 16 bits of a float32 that is a bfloat16 are that bfloat16. The
    round trip computes in float32 and rounds each result once to bfloat16."""
    if dtype == "bfloat16" and round_trip:
        make = "Tensor(np.ascontiguousarray(a, dtype=np.float32))"
        back = f"(lambda f: {ROUND_TO_BFLOAT16})(t.numpy())"
    elif dtype == "bfloat16":
        make = "Tensor((a.view(np.uint32) >> 16).astype(np.uint16)).bitcast(dtypes.bfloat16)"
        back = "(t.bitcast(dtypes.uint16).numpy().astype(np.uint32) << 16).view(np.float32)"
    else:
        make, back = "Tensor(np.ascontiguousarray(a))", "t.numpy()"
    return [
        "def to_tensor(a, requires_grad=False):",
        "    if a is None:",
        "        return None",
        f"    t = {make}.realize()",
        "    t.requires_grad = requires_grad",
        "    return t",
        "",
        "def as_numpy(t):",
        "    if t is None:",
        "        return None",
        "    if not dtypes.is_float(t.dtype):",
        "        return t.numpy().astype(np.int64)  # max pooling's indices (int32)",
        f"    return {back}",
        "",
    ]


def repro_lines(
    function: Callable[..., Any],
    array_names: Sequence[str],
    output_names: Sequence[str],
    differentiable: Sequence[str],
    backward: bool,
    dtype: str,
    round_trip: bool = False,
) -> list[str]:
    """Lines computing ``got`` (a dict by output name) with tinygrad alone; backward by
    ``out.gradient(*wrt, gradient=grad_output)``."""
    bound = dict(function.keywords) if isinstance(function, functools.partial) else {}
    base = function.func if isinstance(function, functools.partial) else function
    lines = [
        "import functools",
        "from typing import Any",
        "",
        "from tinygrad import Tensor, dtypes, nn",
        "from tinygrad.helpers import Context",
        "",
        *sources(base),
        "",
        *hand_off_lines(dtype, round_trip),
        f"function = functools.partial({base.__name__}, **config, **{bound!r})",
        f"arrays = dict(zip({tuple(array_names)!r}, ({', '.join(array_names)},)))",
    ]
    if not backward:
        return [
            *lines,
            "out = function(*(to_tensor(a) for a in arrays.values()))",
            "outputs = out if isinstance(out, tuple) else (out,)",
            f"got = dict(zip({tuple(output_names)!r}, map(as_numpy, outputs)))",
        ]
    return [
        *lines,
        f"wrt = [n for n in {list(differentiable)!r} if arrays[n] is not None]",
        "tensors = {n: to_tensor(a, n in wrt) for n, a in arrays.items()}",
        "out = function(*tensors.values())",
        "value = out[0] if isinstance(out, tuple) else out",
        "grads = value.gradient(*(tensors[n] for n in wrt), gradient=to_tensor(grad_output))",
        "found = dict(zip(wrt, grads))",
        f"got = dict(zip({tuple(output_names)!r}, "
        f"(as_numpy(found.get(n)) for n in {list(differentiable)!r})))",
    ]
