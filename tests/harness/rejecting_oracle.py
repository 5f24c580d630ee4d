"""A pytest plugin that plants one defect in the oracle: the catalogue's fold rejects a
one-block grid (output_size equal to the kernel), a call torch accepts. A campaign run with
it (``-- -p tests.harness.rejecting_oracle``) must say ``oracle error``, FAIL and exit 1, never
"PASS" over the examples that died."""

from __future__ import annotations

from typing import Any

import conformance.catalogue as catalogue


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _planted(reference: Any) -> Any:
    def fold(input: Any, output_size: Any, kernel_size: Any, *args: Any, **kwargs: Any) -> Any:
        size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        kernel = (
            tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
        )
        if size == kernel:
            raise ValueError("output_size: a one-block grid is not supported (a planted defect)")
        return reference(input, output_size, kernel_size, *args, **kwargs)

    return fold


def plant() -> None:
    """Replace the fold entry's reference in place: every holder of the entry sees it."""
    spec = catalogue.BY_NAME["fold"]
    if not getattr(spec.reference, "planted", False):
        planted = _planted(spec.reference)
        planted.planted = True  # type: ignore[attr-defined]
        object.__setattr__(spec, "reference", planted)


plant()  # on import: -p loads the plugin before any test module is collected
