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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance import implementations
from conformance.catalogue.dtypes import input_scale, numpy_dtype
from conformance.catalogue.example import Example
from conformance.catalogue.spec import InDtype, OpSpec, ToleranceContext
from conformance.implementations.calls import Call, ProcessDied, error_name
from conformance.judge import repro
from conformance.judge.derivatives import (
    DERIVATIVE_DIRECTIONS,
    direction_arrays,
    implementation_attribute,
    output_names,
    sum_of_products_derivatives,
)
from conformance.judge.error_model import (
    Measurement,
    Tolerance,
    measure,
    sum_of_products,
    with_underflow,
)

Arrays = dict[str, np.ndarray | None]


@dataclass
class Outcome:
    """One example judged: its row, whether it passed, and for a failure what failed (its
    repros are written into the row by ``attach_repros``, once the caller knows they are
    wanted: a failure the baseline explains needs none)."""

    row: dict[str, Any]
    passed: bool
    summary: str = ""  # for a failure: what failed, in a line
    repros: Callable[[], None] | None = None

    def attach_repros(self) -> None:
        if self.repros is not None:
            self.repros()
            self.repros = None

    @property
    def report(self) -> str:
        """What failed and its standalone repro snippet ('' for a pass)."""
        if self.passed:
            return ""
        self.attach_repros()
        return f"{self.summary}\n\nRepro:\n{self.row.get('repro', '')}"


def as_tuple(result: Any) -> tuple[Any, ...]:
    """An op's result as a tuple of its outputs."""
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def with_copies(arrays: Mapping[str, np.ndarray | None], names: tuple[str, ...]) -> Arrays:
    """The arrays, with fresh copies of those an op updates in place."""
    return {k: a.copy() if a is not None and k in names else a for k, a in arrays.items()}


def _config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Each config argument as its own column; tuples as strings so columns stay scalar."""
    return {
        k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in config.items()
    }


def describe(arrays: Mapping[str, np.ndarray | None], config: Mapping[str, Any]) -> str:
    """One line for a person: the arrays' shapes, then the config."""
    shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items() if a is not None)
    knobs = ", ".join(f"{k}={v!r}" for k, v in config.items())
    return f"{shapes}; {knobs}" if knobs else shapes


def regions_hit(spec: OpSpec, example: Example, dtype: str = "float64") -> list[str]:
    """The op's coverage regions the example falls in, in the tested dtype (InDtype regions
    look at the inputs as rounded to it)."""
    return [
        name
        for name, hit in spec.coverage.items()
        if (hit(example, dtype) if isinstance(hit, InDtype) else hit(example))
    ]


@dataclass
class Prepared:
    """One example made ready: the arrays as the implementation gets them (``tested``,
    ``grad_output``, ``extra``: the tangents or grad_grads), the same in float64 for the
    oracle, and, once ``oracle`` ran, its answers by output name (``wanted``)."""

    spec: OpSpec
    dtype: str
    direction: str
    example: Example
    config: dict[str, Any]
    tested: Arrays
    oracle_in: Arrays
    extra: Arrays = field(default_factory=dict)
    extra64: Arrays = field(default_factory=dict)
    grad_output: np.ndarray | None = None
    grad64: np.ndarray | None = None
    names: tuple[str, ...] = ()
    wanted: Arrays = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()

    @property
    def attribute(self) -> str:
        return implementation_attribute(self.spec.name, self.direction)


def prepare(spec: OpSpec, dtype: str, direction: str, example: Example) -> Prepared:
    """The example's arrays rounded to the tested dtype (scaled first where the value kind is
    tested at a scale of its own), and their float64 copies."""
    stored = numpy_dtype(dtype)
    scale = input_scale(dtype, example.values)
    tested = {
        k: None if a is None else (a * scale).astype(stored) for k, a in example.arrays.items()
    }
    oracle_in = {k: None if a is None else a.astype(np.float64) for k, a in tested.items()}
    prepared = Prepared(spec, dtype, direction, example, dict(example.config), tested, oracle_in)
    if direction in DERIVATIVE_DIRECTIONS:
        prepared.extra = {
            k: None if a is None else (a * scale).astype(stored)
            for k, a in direction_arrays(spec, example, direction).items()
        }
        prepared.extra64 = {
            k: None if a is None else a.astype(np.float64) for k, a in prepared.extra.items()
        }
    return prepared


def oracle(prepared: Prepared) -> None:
    """The reference's answers on the tested inputs, in float64 (may raise: an oracle error)."""
    spec, config, oracle_in = prepared.spec, prepared.config, prepared.oracle_in
    updated = with_copies(oracle_in, spec.mutated)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        forward = as_tuple(spec.reference(*updated.values(), **config))
        forward += tuple(updated[name] for name in spec.mutated)
        prepared.output_shape = tuple(forward[0].shape)
        direction = prepared.direction
        if direction == "forward":
            prepared.names, expected = (*spec.outputs(config), *spec.mutated), forward
        elif direction == "jvp":
            assert spec.reference_jvp is not None
            tangents = tuple(prepared.extra64.values())
            copies = with_copies(oracle_in, spec.mutated)
            expected = (spec.reference_jvp(tangents, *copies.values(), **config),)
            prepared.names = output_names(spec, direction)
        else:
            # the double backward multiplies grad_output by the grad_grads: scaled like the
            # arrays in float16 (FLOAT16_WIDE_SCALE), their products stay in range as the
            # forward's do
            scale = 1.0
            if direction == "double_backward":
                scale = input_scale(prepared.dtype, prepared.example.values)
            drawn = prepared.example.grad_output(prepared.output_shape) * scale
            prepared.grad_output = drawn.astype(numpy_dtype(prepared.dtype))
            grad64 = prepared.grad64 = prepared.grad_output.astype(np.float64)
            if direction == "backward":
                prepared.names = spec.gradient_names
                expected = as_tuple(spec.reference_backward(grad64, *oracle_in.values(), **config))
            else:
                assert spec.reference_double_backward is not None
                prepared.names = output_names(spec, direction)
                expected = as_tuple(
                    spec.reference_double_backward(
                        grad64, tuple(prepared.extra64.values()), *oracle_in.values(), **config
                    )
                )
    prepared.wanted = dict(zip(prepared.names, expected, strict=True))


def arguments(prepared: Prepared) -> tuple[tuple[Any, ...], Arrays]:
    """The implementation's positional arguments for the prepared example, and the copies of
    the arrays an op updates in place (handed to it)."""
    spec, direction = prepared.spec, prepared.direction
    handed = with_copies(prepared.tested, spec.mutated) if direction != "backward" else {}
    if direction == "forward":
        return tuple(handed.values()), handed
    if direction == "jvp":
        return (tuple(prepared.extra.values()), *handed.values()), handed
    if direction == "backward":
        return (prepared.grad_output, *prepared.tested.values()), handed
    extra = tuple(prepared.extra.values())
    return (prepared.grad_output, extra, *prepared.tested.values()), handed


def call_of(spec: OpSpec, dtype: str, direction: str, example: Example) -> Call:
    """The call an example makes on an implementation (for a history replayed in a repro)."""
    prepared = prepare(spec, dtype, direction, example)
    oracle(prepared)
    return Call(prepared.attribute, arguments(prepared)[0], dict(prepared.config))


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
        got = as_tuple(call(prepared.attribute, given, prepared.config, quarantine=quarantine))
    else:
        got = as_tuple(getattr(runner, prepared.attribute)(*given, **prepared.config))
    if prepared.direction == "forward":
        got += tuple(handed[name] for name in prepared.spec.mutated)
    return got


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
            magnitudes = as_tuple(spec.reference(*absolute, **config))
        else:
            assert context.grad_output is not None
            magnitudes = as_tuple(
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


def judge(
    prepared: Prepared, implementation: Any, got: tuple[Any, ...]
) -> tuple[str, dict[str, Measurement], dict[str, Tolerance], dict[str, Any]]:
    """(verdict, measurements, the bounds they were judged by, columns for the row): pass or
    fail against the accumulation the implementation declares; a failure that holds in the
    tested dtype's own arithmetic is 'widened', a finding rather than a failure."""
    declared = implementations.accumulation_dtype(implementation, prepared.dtype)
    tolerances = bounds(prepared, declared)
    measurements = _measure_outputs(prepared, got, tolerances)
    verdict = "pass" if all(m.passed for m in measurements.values()) else "fail"
    columns: dict[str, Any] = {}
    if verdict == "fail" and declared != prepared.dtype:
        in_dtype = bounds(prepared, prepared.dtype)
        widened = _measure_outputs(prepared, got, in_dtype)
        if all(m.passed for m in widened.values()):
            verdict = "widened"
            columns.update(widened_from=declared, widened_problem=_problems(measurements))
            measurements, tolerances = widened, in_dtype
    return verdict, measurements, tolerances, columns


def _row(prepared: Prepared, implementation: Any, regions: list[str] | None) -> dict[str, Any]:
    """The columns every example's row has, whatever its verdict."""
    spec, example, dtype = prepared.spec, prepared.example, prepared.dtype
    return {
        "op": spec.name,
        "family": spec.family,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": prepared.direction,
        **_config_columns(prepared.config),
        **{f"{k}_shape": None if a is None else str(a.shape) for k, a in prepared.tested.items()},
        "output_shape": str(prepared.output_shape) if prepared.output_shape else None,
        "values": example.values,
        "seed": example.seed,
        "regions": ";".join(regions_hit(spec, example, dtype) if regions is None else regions),
        "example_key": example.key(),
        "example": describe(prepared.tested, prepared.config),
    }


def _snippet(
    prepared: Prepared,
    implementation: Any,
    tolerances: Mapping[str, Tolerance],
    raises: bool = False,
) -> str:
    """The standalone repro of one example: NumPy plus the implementation under test."""
    direction = prepared.direction
    mode: bool | str = direction if direction in DERIVATIVE_DIRECTIONS else direction == "backward"
    call_lines = implementation.repro_lines(
        prepared.spec.name, prepared.config, tuple(prepared.tested), prepared.names, mode,
        prepared.dtype,
    )  # fmt: skip
    extra_name = "tangents" if direction == "jvp" else "grad_grads"
    return repro.snippet(
        prepared.dtype,
        prepared.tested,
        prepared.config,
        prepared.grad_output,
        call_lines,
        {name: want for name, want in prepared.wanted.items() if want is not None},
        {name: tolerance.bound for name, tolerance in tolerances.items()},
        (extra_name, tuple(prepared.extra.values()))
        if direction in DERIVATIVE_DIRECTIONS
        else None,
        raises=raises,
    )


def _failure(
    row: dict[str, Any],
    verdict: str,
    problem: str,
    script: Callable[[], str],
    history: Callable[[], str] = lambda: "",
    died: ProcessDied | None = None,
) -> Outcome:
    """A failing row: its verdict and problem; its repros, made when asked (``script``: the
    example alone; ``history``: the calls before it in its process, as code)."""
    row.update(verdict=verdict, normalized_error=np.inf, bound_ratio=np.inf, n_terms=0)
    row.update(problem=problem, failed_outputs=verdict)
    return _failed(row, problem, script, history, died)


def _failed(
    row: dict[str, Any],
    problem: str,
    script: Callable[[], str],
    history: Callable[[], str],
    died: ProcessDied | None = None,
) -> Outcome:
    summary = f"{row['op']} {row['direction']} {row['dtype']}: {problem}"
    return Outcome(row, False, summary, lambda: _attach_repros(row, script(), history(), died))


def _attach_repros(row: dict[str, Any], script: str, history: str, died: Any = None) -> None:
    """``repro``: the example alone; ``history_repro``: after the calls made before it in the
    same process (where there were any). A crash's or hang's runs in a watched child."""
    wrap = (lambda code: repro.in_subprocess(code, died)) if died is not None else str
    row["repro"] = wrap(script)
    if history:
        row["history_repro"] = wrap(repro.with_history(history, script))


def _history(implementation: Any) -> str:
    """The calls made before this one in the process that made it, as repro code ('' when
    there were none, or the implementation's runner does not remember them)."""
    from conformance.judge.history import history_code

    remembered = getattr(implementation, "history", None)
    calls = remembered() if callable(remembered) else []
    return history_code(calls, implementation) if calls else ""


def died_outcome(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
    regions: list[str],
    died: ProcessDied,
    history: list[Call] | None = None,
    quarantine: bool = False,
) -> Outcome:
    """The outcome of an example whose judging killed the implementation's helper process or
    outlived its time limit there: a crash or a hang, built here from the example (the
    helper took its rows with it). ``history``: the calls made before it in that process."""
    prepared = prepare(spec, dtype, direction, example)
    row = _row(prepared, implementation, regions)
    if quarantine:
        row["quarantined"] = True
    try:
        oracle(prepared)
        row["output_shape"] = str(prepared.output_shape)
    except Exception as error:  # the oracle failing here too is worth saying
        row["oracle_problem"] = f"{type(error).__name__}: {error}"

    def earlier() -> str:
        from conformance.judge.history import history_code

        return history_code(history, implementation) if history else ""

    script = lambda: _snippet(prepared, implementation, {})  # noqa: E731
    return _failure(row, died.verdict, str(died), script, earlier, died)


def harness_failure(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
    error: Exception,
) -> Outcome:
    """An example the harness could not even prepare: a harness error, with what it knows."""
    row = {
        "op": spec.name,
        "family": spec.family,
        "implementation": getattr(implementation, "name", str(implementation)),
        "dtype": dtype,
        "direction": direction,
        "values": example.values,
        "seed": example.seed,
        "example_key": example.key(),
        "example": describe(example.arrays, example.config),
        "verdict": "harness error",
        "normalized_error": np.inf,
        "bound_ratio": np.inf,
        "failed_outputs": "harness error",
        "problem": f"the harness raised {type(error).__name__}: {error}",
    }
    return Outcome(row, False, f"{spec.name} {direction} {dtype}: {row['problem']}")


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
    prepared = prepare(spec, dtype, direction, example)
    row = _row(prepared, implementation, regions)
    if quarantine:
        row["quarantined"] = True
    try:
        oracle(prepared)
    except Exception as error:
        problem = f"the reference raised {type(error).__name__}: {error}"
        return _failure(row, "oracle error", problem, lambda: repro.oracle_snippet(prepared))
    row["output_shape"] = str(prepared.output_shape)
    try:
        got = call_implementation(implementation, prepared, quarantine)
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
    return _measured(prepared, implementation, row, verdict, measurements, tolerances)


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
    return _failed(
        row,
        row["problem"],
        lambda: _snippet(prepared, implementation, tolerances),
        lambda: _history(implementation),
    )
