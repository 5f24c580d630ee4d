"""The default error model of an op's forward and backward: every inexact output is a sum of
products, bounded from the op's own reference run on magnitudes (conformance.judge.error_model
.sum_of_products). A family's custom model may start from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.catalogue.spec import OpSpec, ToleranceContext
from conformance.judge.error_model import Tolerance, all_finite, sum_of_products


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


# float32 holds every value of these exactly: the magnitude pass may run in float32 on them
SINGLE_EXACT = ("float32", "float16", "bfloat16")
# the float32 magnitude's own rounding, gamma_(2n+2)(2^-24), kept below 1 %: up to ~40,000
# terms (error_model.magnitude_cover)
SINGLE_TERMS_LIMIT = 40_000
# below this many output elements the float32 pass saves less than its casts and checks cost
# (the ci campaign's examples: 0.57 against 0.54 ms of bound per example)
SINGLE_FROM_SIZE = 4096


def sum_of_products_tolerances(spec: OpSpec, context: ToleranceContext) -> dict[str, Tolerance]:
    """The default error model: every inexact output is a sum of products."""
    inexact = [n for n, e in context.expected.items() if e is not None and n not in spec.exact]
    if not inexact:
        return {}
    terms = spec.terms(context.example, context.output_shape)
    magnitude_dtype = "float64"
    size = sum(int(np.size(e)) for n in inexact if (e := context.expected[n]) is not None)
    if (
        context.dtype in SINGLE_EXACT
        and size >= SINGLE_FROM_SIZE
        and max(terms[n] for n in inexact) <= SINGLE_TERMS_LIMIT
    ):
        magnitude_dtype = "float32"
    magnitudes = _magnitudes(spec, context, magnitude_dtype)
    if magnitude_dtype == "float32" and not all(
        _finite_where_expected(m, context.expected[n]) for n, m in magnitudes.items()
    ):
        # a float32 magnitude past float32's range (or the inputs' own infinities): the
        # float64 pass says which
        magnitude_dtype = "float64"
        magnitudes = _magnitudes(spec, context, magnitude_dtype)
    tolerances = {}
    for name in inexact:
        expected = context.expected[name]
        assert expected is not None
        tolerances[name] = sum_of_products(
            expected,
            magnitudes[name],
            terms[name],
            context.accumulation_dtype,
            context.dtype,
            magnitude_dtype,
            underflow=True,
        )
    return tolerances


def _magnitudes(spec: OpSpec, context: ToleranceContext, dtype: str) -> dict[str, Any]:
    """The op on the absolute values of its linear arguments (M of the error model), by
    output name, computed in ``dtype`` (float32 only on values float32 holds exactly)."""
    linear = spec.array_args if spec.linear_args is None else spec.linear_args
    cast = np.float64 if dtype == "float64" else np.float32

    def operand(array: np.ndarray | None, absolute: bool) -> np.ndarray | None:
        if array is None or array.dtype.kind != "f":
            return array
        if absolute:
            return np.abs(array, dtype=cast)
        return array if array.dtype == cast else array.astype(cast)

    absolute = [operand(a, name in linear) for name, a in context.inputs.items()]
    config = dict(context.example.config)
    with np.errstate(invalid="ignore", over="ignore"):
        if context.direction == "forward":
            magnitudes = _as_tuple(spec.reference(*absolute, **config))
        else:
            assert context.grad_output is not None
            grad = operand(context.grad_output, True)
            magnitudes = _as_tuple(spec.reference_backward(grad, *absolute, **config))
    return dict(zip(context.expected, magnitudes, strict=True))


def _finite_where_expected(magnitude: np.ndarray | None, expected: np.ndarray | None) -> bool:
    """The magnitude is finite wherever the oracle is (one pass each in the common case)."""
    if magnitude is None or expected is None or magnitude.dtype.kind != "f":
        return True
    if all_finite(magnitude):
        return True
    return bool(np.all(np.isfinite(magnitude) | ~np.isfinite(expected)))
