"""Run one example through the oracle and an implementation, and measure every output.

The oracle is the reference in float64 on the very inputs the implementation saw (each array
rounded to the tested dtype first). Every output - the forward results, or each gradient - is
measured against its bound (or bitwise, for the entry's exact outputs); the example's figures
are the worst over its outputs.

``run_example`` reads in the order of the work: the inputs as tested (``prepare``), the
oracle's answers (``oracle``), the implementation's call (``call_implementation``), each
output's bound (``bounds``), the measurement and the verdict (``judge``). Whatever goes wrong
on the way is a verdict of its own, never a lost example:

- ``oracle error``: the reference raised on an example the strategy calls valid;
- ``error``: the implementation raised;
- ``crash`` / ``hang``: the implementation's call killed its process or outlived its time
  limit (conformance.implementations.isolation);
- ``harness error``: the bound or the measurement raised: the suite's own defect;
- ``unsupported``: the adapter declared it cannot express the example.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance import implementations
from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec, ToleranceContext
from conformance.implementations.calls import ProcessDied, error_name
from conformance.judge import repro
from conformance.judge.default_bounds import sum_of_products_tolerances
from conformance.judge.derivatives import DERIVATIVE_DIRECTIONS, sum_of_products_derivatives
from conformance.judge.error_model import (
    Measurement,
    Tolerance,
    measure,
    with_underflow,
)
from conformance.judge.failures import (
    Outcome,
    _failed,
    _failure,
    _history,
    _snippet,
    _window_note,
    died_outcome,
    harness_failure,
)
from conformance.judge.prepared import (
    Prepared,
    _row,
    arguments,
    as_tuple,
    call_of,
    describe,
    oracle,
    prepare,
    regions_hit,
    special_values,
    with_copies,
)
from conformance.judge.steps import split_off, step

__all__ = [
    "Outcome",
    "Prepared",
    "as_tuple",
    "bounds",
    "call_implementation",
    "call_of",
    "describe",
    "died_outcome",
    "harness_failure",
    "judge",
    "oracle",
    "prepare",
    "regions_hit",
    "run_example",
    "sum_of_products_tolerances",
    "with_copies",
]


def call_implementation(
    runner: Any, prepared: Prepared, quarantine: bool = False
) -> tuple[Any, ...]:
    """The implementation's outputs for the prepared example. ``runner``: an implementation,
    or one wrapped by conformance.implementations.isolation (``quarantine``: in the process
    kept for calls that damage their process). Arrays an op updates in place are outputs
    too."""
    given, handed = arguments(prepared)
    call = getattr(runner, "call", None)
    if callable(call):
        config = prepared.example.call_config
        got = as_tuple(call(prepared.attribute, given, config, quarantine=quarantine))
    else:
        got = as_tuple(getattr(runner, prepared.attribute)(*given, **prepared.example.call_config))
    if prepared.direction == "forward":
        got += tuple(handed[name] for name in prepared.spec.mutated)
    return got


def _own_seconds(runner: Any) -> float | None:
    """The last call's own seconds where the runner timed it (InProcess, Isolated: their
    ``last_seconds``), else None. Read from the instance itself: an implementation called bare
    may answer any attribute (its __getattr__ is its own)."""
    seconds = getattr(runner, "__dict__", {}).get("last_seconds")
    return seconds if isinstance(seconds, float) else None


def bounds(prepared: Prepared, accumulation: str) -> dict[str, Tolerance]:
    """Each inexact output's bound, for arithmetic accumulated in ``accumulation``."""
    spec = prepared.spec
    context = ToleranceContext(
        spec.name,
        prepared.example,
        prepared.direction,
        prepared.oracle_in,
        prepared.grad64,
        prepared.wanted,
        accumulation,
        prepared.dtype,
        prepared.output_shape,
        prepared.extra64,
    )
    if prepared.direction in DERIVATIVE_DIRECTIONS:
        model = spec.derivative_tolerances or (lambda c: sum_of_products_derivatives(spec, c))
    else:
        model = spec.tolerances or (lambda c: sum_of_products_tolerances(spec, c))
    found = model(context)
    return {name: with_underflow(t, accumulation, prepared.dtype) for name, t in found.items()}


def _measure_outputs(
    prepared: Prepared, got: tuple[Any, ...], tolerances: Mapping[str, Tolerance]
) -> dict[str, Measurement]:
    """Each output the implementation returned, measured against the oracle's."""
    names, wanted, dtype = prepared.names, prepared.wanted, prepared.dtype
    measurements: dict[str, Measurement] = {}
    for name, got_one in zip(names, got, strict=False):
        want = wanted[name]
        if want is None or got_one is None:
            if (want is None) != (got_one is None):
                problem = "got None" if got_one is None else "expected None"
                measurements[name] = Measurement(np.inf, np.inf, np.inf, 0, False, problem)
            continue
        expected_dtype = dtype if want.dtype.kind == "f" else str(want.dtype)
        measurements[name] = measure(
            np.asarray(got_one), want, tolerances.get(name), expected_dtype
        )
    if len(got) != len(names):
        problem = f"returned {len(got)} outputs, expected {len(names)}"
        measurements["arity"] = Measurement(np.inf, np.inf, np.inf, 0, False, problem)
    return measurements


def _problems(measurements: Mapping[str, Measurement]) -> str:
    return "; ".join(f"{n}: {m.problem}" for n, m in measurements.items() if not m.passed)


def judge(
    prepared: Prepared, implementation: Any, got: tuple[Any, ...]
) -> tuple[str, dict[str, Measurement], dict[str, Tolerance], dict[str, Any]]:
    """(verdict, measurements, the bounds they were judged by, columns for the row): pass or
    fail against the accumulation the implementation declares; a failure that holds in the
    tested dtype's own arithmetic is 'widened', a finding rather than a failure."""
    declared = implementations.accumulation_dtype(
        implementation, prepared.dtype, prepared.spec.name, prepared.direction
    )
    with step("bound"):
        tolerances = bounds(prepared, declared)
    with step("measure"):
        measurements = _measure_outputs(prepared, got, tolerances)
    verdict = "pass" if all(m.passed for m in measurements.values()) else "fail"
    columns: dict[str, Any] = {}
    if verdict == "fail" and declared != prepared.dtype:
        with step("bound"):
            in_dtype = bounds(prepared, prepared.dtype)
        with step("measure"):
            widened = _measure_outputs(prepared, got, in_dtype)
        if all(m.passed for m in widened.values()):
            verdict = "widened"
            columns.update(widened_from=declared, widened_problem=_problems(measurements))
            measurements, tolerances = widened, in_dtype
    return verdict, measurements, tolerances, columns


def run_example(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
    regions: list[str] | None = None,
    quarantine: bool = False,
    repros: bool = True,
) -> Outcome:
    """Measure one example. ``regions``: regions_hit(spec, example, dtype), when the caller
    has it already; ``quarantine``: make the call in the process kept for calls that damage
    their process (the baseline's isolate entries); ``repros``: write a failure's repros into
    its row now (else ``Outcome.attach_repros`` does, when the caller wants them)."""
    outcome = _judged(spec, implementation, dtype, direction, example, regions, quarantine)
    if not outcome.passed:
        outcome.row["special_values"] = special_values(example.arrays, spec.name)
    if repros:
        outcome.attach_repros()
    return outcome


def _judged(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
    regions: list[str] | None,
    quarantine: bool,
) -> Outcome:
    """run_example's steps, in the order of the work: the inputs, the oracle, the call, the
    bounds, the measurement and the verdict; a failure at any step is a verdict of its own."""
    with step("prepare"):
        prepared = prepare(spec, dtype, direction, example)
        row = _row(prepared, implementation, regions)
    if quarantine:
        row["quarantined"] = True
    try:
        with step("oracle"):
            oracle(prepared)
    except Exception as error:
        problem = f"the reference raised {type(error).__name__}: {error}"
        return _failure(row, "oracle error", problem, lambda: repro.oracle_snippet(prepared))
    row["output_shape"] = str(prepared.output_shape)
    try:
        with step("call"):
            got = call_implementation(implementation, prepared, quarantine)
        split_off("call", _own_seconds(implementation), "hand-off")
    except implementations.Unsupported as declared_unsupported:
        # the adapter cannot express this example: counted apart, never a pass or a failure
        row.update(verdict="unsupported", normalized_error=np.nan, bound_ratio=np.nan)
        row.update(n_terms=0, problem=f"unsupported: {declared_unsupported}")
        return Outcome(row, True)
    except ProcessDied as died:
        script = lambda: _snippet(prepared, implementation, {})  # noqa: E731
        history = lambda: _history(implementation)  # noqa: E731
        return _failure(row, died.verdict, str(died), script, history, died)
    except Exception as error:  # any exception of the implementation is a finding
        problem = f"{error_name(error)}: {error}"
        script = lambda: _snippet(prepared, implementation, {}, raises=True)  # noqa: E731
        return _failure(row, "error", problem, script, lambda: _history(implementation))
    try:
        verdict, measurements, tolerances, columns = judge(prepared, implementation, got)
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        problem = (
            f"the harness raised {type(error).__name__}: {error} "
            f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        )
        return _failure(row, "harness error", problem, lambda: repro.harness_snippet(prepared, row))
    row.update(columns)
    with step("verdict"):
        unjudged = not_judged(prepared, got, tolerances)
        if unjudged:
            row["not_judged"] = unjudged
        return _measured(prepared, implementation, row, verdict, measurements, tolerances)


def not_judged(
    prepared: Prepared, got: tuple[Any, ...], tolerances: Mapping[str, Tolerance]
) -> str:
    """Where the bound makes no claim (infinite): how many elements, and the first values
    the implementation gave there beside the oracle's, recorded rather than judged."""
    notes = []
    for name, got_one in zip(prepared.names, got, strict=False):
        tolerance, want = tolerances.get(name), prepared.wanted.get(name)
        if tolerance is None or want is None or got_one is None:
            continue
        if tolerance.all_finite():  # one pass: then no element is free
            continue
        free = np.isposinf(np.broadcast_to(tolerance.bound, want.shape))
        if not free.any() or np.shape(got_one) != want.shape:
            continue
        values = np.asarray(got_one)[free][:4].tolist()
        expected = want[free][:4].tolist()
        notes.append(
            f"{name}: {int(free.sum())} of {want.size} elements not judged "
            f"(got {values}, the reference {expected})"
        )
    return "; ".join(notes)


def _measured(
    prepared: Prepared,
    implementation: Any,
    row: dict[str, Any],
    verdict: str,
    measurements: Mapping[str, Measurement],
    tolerances: Mapping[str, Tolerance],
) -> Outcome:
    """The row of a measured example: its worst output's figures, its verdict, and for a
    failure the outputs that failed and its repros."""
    worst_name = max(measurements, key=lambda n: measurements[n].bound_ratio)
    worst = measurements[worst_name]
    row.update(
        verdict=verdict,
        normalized_error=max(m.normalized_error for m in measurements.values()),
        bound_ratio=worst.bound_ratio,
        max_abs_error=max(m.max_abs_error for m in measurements.values()),
        worst_output=worst_name,
        n_terms=worst.n_terms,
        problem=_problems(measurements),
    )
    if verdict != "fail":
        return Outcome(row, True)
    row["failed_outputs"] = ";".join(n for n, m in measurements.items() if not m.passed)
    note = _window_note(prepared, measurements)
    if note:
        row["window"] = note
    return _failed(
        row,
        row["problem"],
        lambda: _snippet(prepared, implementation, tolerances, note=note),
        lambda: _history(implementation),
    )
