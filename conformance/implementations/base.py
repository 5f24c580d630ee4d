"""What every implementation shares: the exception for what it cannot express, the
dispatch of the adapters with a backward (OpsByName), and how the harness reads an
implementation's optional declarations."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any


class Unsupported(Exception):
    """Raised by an adapter for an example its framework cannot express; the message is the
    reason the report shows."""


DIRECTION_SUFFIXES = ("_double_backward", "_backward", "_jvp")


class OpsByName:
    """What the adapters with a backward share: ``self._ops`` maps each catalogue op they run
    to a callable; ``impl.<op>`` calls ``self._forward``, ``impl.<op>_backward``
    ``self._backward``, and, for an adapter that sets ``derivatives = True``,
    ``impl.<op>_jvp`` ``self._jvp`` and ``impl.<op>_double_backward``
    ``self._double_backward`` (for the ops with differentiable arguments)."""

    _ops: dict[str, Callable[..., Any]]
    derivatives = False  # whether _jvp and _double_backward are defined

    def _split(self, name: str) -> tuple[str, str]:
        for suffix in DIRECTION_SUFFIXES:
            if name.endswith(suffix):
                return name.removesuffix(suffix), suffix
        return name, ""

    def has(self, op: str) -> bool:
        base, suffix = self._split(op)
        if suffix in ("_jvp", "_double_backward") and not self.derivatives:
            return False
        return base in self._ops

    def _forward(self, op: str, arrays: Sequence[Any], config: dict) -> Any:
        raise NotImplementedError

    def _backward(
        self, op: str, grad_output: Any, arrays: Sequence[Any], config: dict
    ) -> tuple[Any, ...]:
        raise NotImplementedError

    def _jvp(self, op: str, tangents: Sequence[Any], arrays: Sequence[Any], config: dict) -> Any:
        raise NotImplementedError

    def _double_backward(
        self,
        op: str,
        grad_output: Any,
        grad_grads: Sequence[Any],
        arrays: Sequence[Any],
        config: dict,
    ) -> tuple[Any, ...]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Callable[..., Any]:
        ops = self.__dict__.get("_ops", {})
        base, suffix = self._split(name)
        if base not in ops or (suffix in ("_jvp", "_double_backward") and not self.derivatives):
            raise AttributeError(name)
        if suffix == "":
            return lambda *arrays, **config: self._forward(name, arrays, config)
        if suffix == "_backward":
            return lambda grad_output, *arrays, **config: self._backward(
                base, grad_output, arrays, config
            )
        if suffix == "_jvp":
            return lambda tangents, *arrays, **config: self._jvp(base, tangents, arrays, config)
        return lambda grad_output, grad_grads, *arrays, **config: self._double_backward(
            base, grad_output, grad_grads, arrays, config
        )


def implements(implementation: Any, op: str) -> bool:
    has = getattr(implementation, "has", None)
    return bool(has(op)) if callable(has) else hasattr(implementation, op)


def supports(implementation: Any, op: str, dtype: str) -> bool:
    """Whether the implementation runs ``op`` in ``dtype`` at all (default: yes)."""
    declared = getattr(implementation, "supports", None)
    return bool(declared(op, dtype)) if callable(declared) else True


def accumulation_dtype(
    implementation: Any, dtype: str, op: str | None = None, direction: str | None = None
) -> str:
    """The precision the implementation accumulates ``dtype`` in (default: ``dtype``). A
    declaration that takes ``op`` and ``direction`` keywords gets them (an adapter whose
    backward accumulates wider than its forward, or one op differently from the rest);
    ``accumulation_dtype(dtype)`` alone answers for every op and direction."""
    declared = getattr(implementation, "accumulation_dtype", None)
    if not callable(declared):
        return dtype
    if op is not None and _takes_op_and_direction(declared):
        return str(declared(dtype, op=op, direction=direction))
    return str(declared(dtype))


def _takes_op_and_direction(function: Any) -> bool:
    """Whether ``accumulation_dtype`` takes op and direction: asked once per function (a
    bound method's underlying one), not on every example (inspect costs 60 us a call)."""
    underlying = getattr(function, "__func__", function)
    try:
        return _declares_op_and_direction(underlying)
    except TypeError:  # not hashable: asked each time
        return _declares_op_and_direction.__wrapped__(underlying)


@functools.lru_cache(maxsize=256)
def _declares_op_and_direction(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: the one-argument form
        return False
    names = {p.name for p in parameters}
    return {"op", "direction"} <= names or any(p.kind is p.VAR_KEYWORD for p in parameters)


def values_per_configuration(implementation: Any) -> int:
    """How many examples share one configuration (its config and shapes, each with other
    values): what an implementation that compiles per configuration declares as
    ``values_per_configuration`` (default 1: every example its own configuration).
    $CONFORMANCE_VALUES_PER_CONFIGURATION overrides every implementation's."""
    override = os.environ.get("CONFORMANCE_VALUES_PER_CONFIGURATION")
    if override:
        count = int(override) if override.isdigit() else 0
        if count < 1:
            raise ValueError(
                f"CONFORMANCE_VALUES_PER_CONFIGURATION must be a positive integer, got {override!r}"
            )
        return count
    return max(1, int(getattr(implementation, "values_per_configuration", 1)))


def versions(implementation: Any) -> dict[str, str]:
    """The framework versions an implementation runs on (for the header and the baseline)."""
    declared = getattr(implementation, "versions", None)
    return dict(declared()) if callable(declared) else {}
