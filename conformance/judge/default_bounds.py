"""The default error model of an op's forward and backward: every inexact output is a sum of
products, bounded from the op's own reference run on magnitudes (conformance.judge.error_model
.sum_of_products). A family's custom model may start from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.catalogue.spec import OpSpec, ToleranceContext
from conformance.judge.error_model import Tolerance, sum_of_products


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def sum_of_products_tolerances(spec: OpSpec, context: ToleranceContext) -> dict[str, Tolerance]:
    """The default error model: every inexact output is a sum of products."""
    inexact = [n for n, e in context.expected.items() if e is not None and n not in spec.exact]
    if not inexact:
        return {}
    linear = spec.array_args if spec.linear_args is None else spec.linear_args
    absolute = [
        np.abs(a) if a is not None and name in linear else a for name, a in context.inputs.items()
    ]
    config = dict(context.example.config)
    with np.errstate(invalid="ignore", over="ignore"):
        if context.direction == "forward":
            magnitudes = _as_tuple(spec.reference(*absolute, **config))
        else:
            assert context.grad_output is not None
            magnitudes = _as_tuple(
                spec.reference_backward(np.abs(context.grad_output), *absolute, **config)
            )
    terms = spec.terms(context.example, context.output_shape)
    by_name = dict(zip(context.expected, magnitudes, strict=True))
    tolerances = {}
    for name in inexact:
        expected = context.expected[name]
        assert expected is not None
        tolerances[name] = sum_of_products(
            expected, by_name[name], terms[name], context.accumulation_dtype, context.dtype
        )
    return tolerances
