"""Repro snippets that carry an adapter's own functions verbatim: the source of the functions
a call runs, and of every function, class and upper-case constant they use from the
adapter's modules, dependencies first, so that a snippet defines them all and needs
nothing but the framework."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Collection, Sequence
from typing import Any


def _names_used(code: types.CodeType) -> set[str]:
    used = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            used |= _names_used(constant)
    return used


def function_sources(
    functions: Sequence[Callable[..., Any]], modules: Collection[types.ModuleType]
) -> list[str]:
    """The lines of ``functions`` and of what they use from ``modules`` (see above)."""
    found: dict[str, str] = {}

    def visit(target: Any) -> None:
        module = inspect.getmodule(target)
        for name in sorted(_names_used(target.__code__)):
            value = getattr(module, name, None)
            if name in found or value is None:
                continue
            if inspect.isfunction(value) and inspect.getmodule(value) in modules:
                found[name] = ""  # mark before recursing: no cycles
                visit(value)
                found[name] = inspect.getsource(value)
            elif inspect.isclass(value) and inspect.getmodule(value) in modules:
                found[name] = inspect.getsource(value)
            elif isinstance(value, (dict, tuple)) and name.isupper():
                found[name] = f"{name} = {value!r}\n"

    for function in functions:
        if function.__name__ not in found:
            visit(function)
            found[function.__name__] = inspect.getsource(function)
    return "\n".join(found.values()).splitlines()
