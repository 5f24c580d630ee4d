"""A test fixture: conv2d that runs in float32 only (as many accelerator libraries do) and
says so through supports(); otherwise the reference's arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference

name = "float32-only"


def supports(op: str, dtype: str) -> bool:
    return dtype == "float32"


def conv2d(input: np.ndarray, weight: np.ndarray, *args: Any, **config: Any) -> np.ndarray:
    if input.dtype != np.float32:
        raise TypeError(f"float32-only: no kernel for {input.dtype}")
    return reference.conv2d(input, weight, *args, **config).astype(np.float32)
