"""A failing example's outcome and its evidence: the verdict, the problem, and its repros
(the example alone, and after the calls made before it in its process), made when the
caller wants them; the outcomes of an example the helper died on (crash, hang) and of one
the harness could not even prepare (harness error)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec
from conformance.implementations.calls import Call, ProcessDied
from conformance.judge import repro
from conformance.judge.derivatives import DERIVATIVE_DIRECTIONS
from conformance.judge.error_model import Measurement, Tolerance
from conformance.judge.prepared import (
    Prepared,
    _row,
    describe,
    oracle,
    passed_arrays,
    prepare,
    special_values,
)


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


def _snippet(
    prepared: Prepared,
    implementation: Any,
    tolerances: Mapping[str, Tolerance],
    raises: bool = False,
    note: str = "",
) -> str:
    """The standalone repro of one example: NumPy plus the implementation under test."""
    direction = prepared.direction
    mode: bool | str = direction if direction in DERIVATIVE_DIRECTIONS else direction == "backward"
    call_lines = implementation.repro_lines(
        prepared.spec.name, prepared.example.call_config, passed_arrays(prepared),
        prepared.names, mode,
        prepared.dtype,
    )  # fmt: skip
    extra_name = "tangents" if direction == "jvp" else "grad_grads"
    return repro.snippet(
        prepared.dtype,
        prepared.tested,
        prepared.example.call_config,  # the call as drawn: what it leaves out, left out
        prepared.grad_output,
        call_lines,
        {name: want for name, want in prepared.wanted.items() if want is not None},
        {name: tolerance.bound for name, tolerance in tolerances.items()},
        (extra_name, tuple(prepared.extra.values()))
        if direction in DERIVATIVE_DIRECTIONS
        else None,
        raises=raises,
        note=note,
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
    row["special_values"] = special_values(example.arrays, spec.name)
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


def _window_note(prepared: Prepared, measurements: Mapping[str, Measurement]) -> str:
    """A pooling forward's failing element's window, its input values in full (repro.
    window_note); '' elsewhere."""
    if prepared.direction != "forward":
        return ""
    for name in ("output", "indices"):
        measurement = measurements.get(name)
        found = (
            None if measurement is None else re.search(r" at (\([0-9, ]*\))", measurement.problem)
        )
        x = prepared.oracle_in.get("input")
        if measurement is not None and not measurement.passed and found and x is not None:
            at = tuple(int(i) for i in found.group(1).strip("()").split(",") if i.strip())
            try:
                return repro.window_note(prepared.spec.name, prepared.config, x, at)
            except (ValueError, IndexError, KeyError):
                return ""
    return ""
