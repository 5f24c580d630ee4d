"""A test fixture: max_pool2d through the reference, except that it cannot express
ceil_mode, which it declares unsupported per example, as a real adapter does."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference
from conformance.implementations import Unsupported

name = "partial_pool"


def max_pool2d(input: np.ndarray, *args: Any, **config: Any) -> Any:
    if config.get("ceil_mode"):
        raise Unsupported("ceil_mode: this fixture has no ceil-mode windows")
    return reference.max_pool2d(input, *args, **config)
