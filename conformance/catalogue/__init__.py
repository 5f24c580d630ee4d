"""The catalogue: one declarative entry per op, from which tests, reports and the CLI derive
(conformance.catalogue.entries builds it; conformance.catalogue.spec says what an entry is).

``CATALOGUE`` and ``BY_NAME`` are built on first use, not on import: the CLI reads the op
names (conformance.catalogue.names) and refuses a bad argument in a line before Hypothesis,
the families and their strategies are loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.catalogue.entries import BY_NAME, CATALOGUE
    from conformance.catalogue.spec import OpSpec

__all__ = ["BY_NAME", "CATALOGUE", "OpSpec"]


def __getattr__(name: str) -> Any:
    if name in ("CATALOGUE", "BY_NAME"):
        return getattr(importlib.import_module("conformance.catalogue.entries"), name)
    if name == "OpSpec":
        return importlib.import_module("conformance.catalogue.spec").OpSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
