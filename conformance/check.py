"""Run one example through the oracle and an implementation, and measure every output.

The oracle is the reference in float64 on the very inputs the implementation saw (each array
rounded to the tested dtype first). Every output - the forward results, or each gradient - is
measured against its bound (or bitwise, for the entry's exact outputs); the example's figures
are the worst over its outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance import implementations, repro
from conformance.baseline import NOT_RUN
from conformance.derivatives import (
    DERIVATIVE_DIRECTIONS,
    direction_arrays,
    implementation_attribute,
    output_names,
    sum_of_products_derivatives,
)
from conformance.dtypes import input_scale, numpy_dtype
from conformance.error_model import (
    Measurement,
    Tolerance,
    measure,
    sum_of_products,
    with_underflow,
)
from conformance.example import Example
from conformance.spec import InDtype, OpSpec, ToleranceContext


@dataclass(frozen=True)
class Outcome:
    row: dict[str, Any]
    passed: bool
    report: str  # for a failure: what failed and a standalone repro snippet


def _config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Each config argument as its own column; tuples as strings so columns stay scalar."""
    return {
        k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in config.items()
    }


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
        oracle = context.expected[name]
        assert oracle is not None
        tolerances[name] = sum_of_products(
            oracle, by_name[name], terms[name], context.accumulation_dtype, context.dtype
        )
    return tolerances


def _copies(
    arrays: Mapping[str, np.ndarray | None], names: tuple[str, ...]
) -> dict[str, np.ndarray | None]:
    """The arrays, with fresh copies of those an op updates in place."""
    return {k: a.copy() if a is not None and k in names else a for k, a in arrays.items()}


def _measure_outputs(
    names: tuple[str, ...],
    got: tuple[Any, ...],
    wanted: Mapping[str, np.ndarray | None],
    tolerances: Mapping[str, Tolerance],
    dtype: str,
) -> dict[str, Measurement]:
    """Each output the implementation returned, measured against the oracle's."""
    measurements: dict[str, Measurement] = {}
    for name, got_one in zip(names, got, strict=False):
        want = wanted[name]
        if want is None or got_one is None:
            if (want is None) != (got_one is None):
                problem = "got None" if got_one is None else "expected None"
                measurements[name] = Measurement(np.inf, np.inf, np.inf, 0, False, problem)
            continue
        expected_dtype = dtype if np.issubdtype(want.dtype, np.floating) else str(want.dtype)
        measurements[name] = measure(
            np.asarray(got_one), want, tolerances.get(name), expected_dtype
        )
    if len(got) != len(names):
        problem = f"returned {len(got)} outputs, expected {len(names)}"
        measurements["arity"] = Measurement(np.inf, np.inf, np.inf, 0, False, problem)
    return measurements


def _problems(measurements: Mapping[str, Measurement]) -> str:
    return "; ".join(f"{n}: {m.problem}" for n, m in measurements.items() if not m.passed)


def describe(arrays: Mapping[str, np.ndarray | None], config: Mapping[str, Any]) -> str:
    """One line for a person: the arrays' shapes, then the config."""
    shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items() if a is not None)
    knobs = ", ".join(f"{k}={v!r}" for k, v in config.items())
    return f"{shapes}; {knobs}" if knobs else shapes


def _snippet(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    tested: Mapping[str, np.ndarray | None],
    config: Mapping[str, Any],
    grad_output: np.ndarray | None,
    names: tuple[str, ...],
    wanted: Mapping[str, np.ndarray | None],
    tolerances: Mapping[str, Tolerance],
    extra: Mapping[str, np.ndarray | None],
) -> str:
    """The standalone repro of one example: NumPy plus the implementation under test."""
    mode: bool | str = direction if direction in DERIVATIVE_DIRECTIONS else direction == "backward"
    call_lines = implementation.repro_lines(spec.name, config, tuple(tested), names, mode, dtype)
    extra_name = "tangents" if direction == "jvp" else "grad_grads"
    return repro.snippet(
        dtype,
        tested,
        config,
        grad_output,
        call_lines,
        {name: want for name, want in wanted.items() if want is not None},
        {name: tolerance.bound for name, tolerance in tolerances.items()},
        (extra_name, tuple(extra.values())) if direction in DERIVATIVE_DIRECTIONS else None,
    )


def regions_hit(spec: OpSpec, example: Example, dtype: str = "float64") -> list[str]:
    """The op's coverage regions the example falls in, in the tested dtype (InDtype regions
    look at the inputs as rounded to it)."""
    return [
        name
        for name, hit in spec.coverage.items()
        if (hit(example, dtype) if isinstance(hit, InDtype) else hit(example))
    ]


def run_example(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
    call: bool = True,
    regions: list[str] | None = None,
) -> Outcome:
    """Measure one example; with ``call=False`` record it without calling the implementation
    (for a call the baseline knows to crash the process). ``regions``: regions_hit(spec,
    example), when the caller has it already."""
    stored = numpy_dtype(dtype)
    scale = input_scale(dtype, example.values)
    tested = {
        k: None if a is None else (a * scale).astype(stored) for k, a in example.arrays.items()
    }
    oracle_in = {k: None if a is None else a.astype(np.float64) for k, a in tested.items()}
    config = dict(example.config)
    updated = _copies(oracle_in, spec.mutated)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        forward_oracle = _as_tuple(spec.reference(*updated.values(), **config))
    forward_oracle += tuple(updated[name] for name in spec.mutated)
    output_shape = forward_oracle[0].shape
    grad_output = grad64 = None
    extra: dict[
        str, np.ndarray | None
    ] = {}  # tangents or grad_grads, as the implementation got them
    extra64: dict[str, np.ndarray | None] = {}
    if direction in DERIVATIVE_DIRECTIONS:
        extra = {
            k: None if a is None else (a * scale).astype(stored)
            for k, a in direction_arrays(spec, example, direction).items()
        }
        extra64 = {k: None if a is None else a.astype(np.float64) for k, a in extra.items()}
    attribute = implementation_attribute(spec.name, direction)
    if direction == "forward":
        names = (*spec.outputs(config), *spec.mutated)
        expected: tuple[np.ndarray | None, ...] = forward_oracle
        handed = _copies(tested, spec.mutated)  # the implementation updates these
        arguments: tuple[Any, ...] = tuple(handed.values())
    elif direction == "jvp":
        assert spec.reference_jvp is not None
        names = output_names(spec, direction)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            expected = (
                spec.reference_jvp(
                    tuple(extra64.values()), *_copies(oracle_in, spec.mutated).values(), **config
                ),
            )
        arguments = (tuple(extra.values()), *_copies(tested, spec.mutated).values())
    else:
        # the double backward multiplies grad_output by the grad_grads: scaled like the arrays
        # in float16 (FLOAT16_WIDE_SCALE), their products stay in range as the forward's do
        grad_scale = scale if direction == "double_backward" else 1.0
        grad_output = (example.grad_output(output_shape) * grad_scale).astype(stored)
        grad64 = grad_output.astype(np.float64)
        if direction == "backward":
            names = spec.gradient_names
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                expected = _as_tuple(spec.reference_backward(grad64, *oracle_in.values(), **config))
            arguments = (grad_output, *tested.values())
        else:
            assert spec.reference_double_backward is not None
            names = output_names(spec, direction)
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                expected = _as_tuple(
                    spec.reference_double_backward(
                        grad64, tuple(extra64.values()), *oracle_in.values(), **config
                    )
                )
            arguments = (grad_output, tuple(extra.values()), *tested.values())
    function = getattr(implementation, attribute)
    wanted = dict(zip(names, expected, strict=True))
    declared = implementations.accumulation_dtype(implementation, dtype)

    def tolerances_for(accumulation: str) -> dict[str, Tolerance]:
        context = ToleranceContext(
            spec.name,
            example,
            direction,
            oracle_in,
            grad64,
            wanted,
            accumulation,
            dtype,
            tuple(output_shape),
            extra64,
        )
        if direction in DERIVATIVE_DIRECTIONS:
            found = (
                spec.derivative_tolerances or (lambda c: sum_of_products_derivatives(spec, c))
            )(context)
        else:
            found = (spec.tolerances or (lambda c: sum_of_products_tolerances(spec, c)))(context)
        return {name: with_underflow(t, accumulation, dtype) for name, t in found.items()}

    tolerances = tolerances_for(declared)

    row: dict[str, Any] = {
        "op": spec.name,
        "family": spec.family,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": direction,
        **_config_columns(config),
        **{f"{k}_shape": None if a is None else str(a.shape) for k, a in tested.items()},
        "output_shape": str(output_shape),
        "values": example.values,
        "seed": example.seed,
        "regions": ";".join(regions_hit(spec, example, dtype) if regions is None else regions),
        "example_key": example.key(),
        "example": describe(tested, config),
    }
    if not call:
        row.update(verdict="known", normalized_error=np.nan, bound_ratio=np.nan, problem=NOT_RUN)
        return Outcome(row, False, NOT_RUN)

    def repro_of_this() -> str:
        return _snippet(
            spec,
            implementation,
            dtype,
            direction,
            tested,
            config,
            grad_output,
            names,
            wanted,
            tolerances,
            extra,
        )

    try:
        got = _as_tuple(function(*arguments, **config))
        if direction == "forward":
            got += tuple(handed[name] for name in spec.mutated)
    except implementations.Unsupported as declared_unsupported:
        # the adapter cannot express this example: counted apart, never a pass or a failure
        row.update(verdict="unsupported", normalized_error=np.nan, bound_ratio=np.nan)
        row.update(n_terms=0, problem=f"unsupported: {declared_unsupported}")
        return Outcome(row, True, "")
    except Exception as error:  # any exception of the implementation is a finding
        problem = f"{type(error).__name__}: {error}"
        row.update(verdict="error", normalized_error=np.inf, bound_ratio=np.inf, n_terms=0)
        row["problem"] = problem
        row["repro"] = repro_of_this()
        report = f"{spec.name} {direction} {dtype} raised {problem}\n\nRepro:\n{row['repro']}"
        return Outcome(row, False, report)

    measurements = _measure_outputs(names, got, wanted, tolerances, dtype)
    verdict = "pass" if all(m.passed for m in measurements.values()) else "fail"
    if verdict == "fail" and declared != dtype:
        # Does it hold if the arithmetic was done in the tested dtype itself? Then the
        # implementation kept the dtype's own precision but not its declared accumulation:
        # a finding the report lists, not a wrong answer.
        widened = _measure_outputs(names, got, wanted, tolerances_for(dtype), dtype)
        if all(m.passed for m in widened.values()):
            verdict, row["widened_from"] = "widened", declared
            row["widened_problem"] = _problems(measurements)
            measurements = widened
    worst_name = max(measurements, key=lambda n: measurements[n].bound_ratio)
    worst = measurements[worst_name]
    passed = verdict != "fail"
    problems = _problems(measurements)
    row.update(
        verdict=verdict,
        normalized_error=max(m.normalized_error for m in measurements.values()),
        bound_ratio=worst.bound_ratio,
        max_abs_error=max(m.max_abs_error for m in measurements.values()),
        worst_output=worst_name,
        n_terms=worst.n_terms,
        problem=problems,
    )
    if passed:
        return Outcome(row, True, "")
    snippet = repro_of_this()
    row["repro"] = snippet
    report = f"{spec.name} {direction} {dtype}: {problems}\n\nRepro:\n{snippet}"
    return Outcome(row, False, report)
