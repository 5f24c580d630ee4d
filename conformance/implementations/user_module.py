"""A user's own implementation, named by an import spec (module, or module:attribute)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conformance.implementations.base import accumulation_dtype, implements, supports
from conformance.judge import repro


class ModuleImplementation:
    """An object named by an import spec (a module, or module:attribute) under test."""

    def __init__(self, spec: str, target: Any) -> None:
        self.spec = spec
        self._target = target
        self.name = str(getattr(target, "name", spec))

    def has(self, op: str) -> bool:
        return implements(self._target, op)

    def accumulation_dtype(
        self, dtype: str, op: str | None = None, direction: str | None = None
    ) -> str:
        return accumulation_dtype(self._target, dtype, op, direction)

    def supports(self, op: str, dtype: str) -> bool:
        return supports(self._target, op, dtype)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_target"], name)

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool,
        dtype: str = "float64",
    ) -> list[str]:
        module, _, attribute = self.spec.partition(":")
        return repro.module_lines(module, attribute, op, array_names, output_names, backward, dtype)
