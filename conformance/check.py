"""Run one example through the oracle and an implementation, and measure every output.

The oracle is the reference in float64 on the very inputs the implementation saw (each array
rounded to the tested dtype first). Every output - the forward result, or each gradient - is
measured against its bound; the example's figures are the worst over its outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance import implementations, repro
from conformance.catalogue import OpSpec
from conformance.error_model import Measurement, error_bound, measure_sum_of_products
from conformance.example import Example


@dataclass(frozen=True)
class Outcome:
    row: dict[str, Any]
    passed: bool
    report: str  # for a failure: what failed and a standalone repro snippet


def _absolute(arrays: Mapping[str, np.ndarray | None]) -> list[np.ndarray | None]:
    return [None if a is None else np.abs(a) for a in arrays.values()]


def _config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Each config argument as its own column; tuples as strings so columns stay scalar."""
    return {k: v if isinstance(v, (int, str)) else str(v) for k, v in config.items()}


def _as_tuple(result: Any) -> tuple[np.ndarray | None, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def run_example(
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: Example,
) -> Outcome:
    tested = {k: None if a is None else a.astype(dtype) for k, a in example.arrays.items()}
    oracle_in = {k: None if a is None else a.astype(np.float64) for k, a in tested.items()}
    config = dict(example.config)
    forward_oracle = spec.reference(*oracle_in.values(), **config)
    terms = spec.terms(example, forward_oracle.shape)
    grad_output = None
    expected: tuple[np.ndarray | None, ...]
    magnitudes: tuple[np.ndarray | None, ...]
    if direction == "forward":
        names: tuple[str, ...] = ("output",)
        expected = (forward_oracle,)
        magnitudes = (spec.reference(*_absolute(oracle_in), **config),)
        call = getattr(implementation, spec.name)
        arguments: tuple[Any, ...] = tuple(tested.values())
    else:
        grad_output = example.grad_output(forward_oracle.shape).astype(dtype)
        grad64 = grad_output.astype(np.float64)
        names = spec.gradient_names
        expected = spec.reference_backward(grad64, *oracle_in.values(), **config)
        magnitudes = spec.reference_backward(np.abs(grad64), *_absolute(oracle_in), **config)
        call = getattr(implementation, f"{spec.name}_backward")
        arguments = (grad_output, *tested.values())
    accumulation = implementations.accumulation_dtype(implementation, dtype)

    row: dict[str, Any] = {
        "op": spec.name,
        "family": spec.family,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": direction,
        **_config_columns(config),
        **{f"{k}_shape": None if a is None else str(a.shape) for k, a in tested.items()},
        "output_shape": str(forward_oracle.shape),
        "values": example.values,
        "seed": example.seed,
        "regions": ";".join(name for name, hit in spec.coverage.items() if hit(example)),
        "example_key": example.key(),
    }
    try:
        got = _as_tuple(call(*arguments, **config))
    except Exception as error:  # any exception of the implementation is a finding
        row.update(verdict="error", normalized_error=np.inf, bound_ratio=np.inf, n_terms=0)
        problem = f"{type(error).__name__}: {error}"
        row["problem"] = problem
        return Outcome(row, False, f"{spec.name} {direction} {dtype} raised {problem}")

    # output name -> (oracle, magnitude), for the outputs the oracle has (no grad_bias
    # without a bias)
    wanted = {
        name: (want, magnitude)
        for name, want, magnitude in zip(names, expected, magnitudes, strict=True)
        if want is not None and magnitude is not None
    }
    measurements: dict[str, Measurement] = {}
    for name, got_one in zip(names, got, strict=False):
        if name not in wanted or got_one is None:
            if (name in wanted) != (got_one is not None):
                problem = "got None" if got_one is None else "expected None"
                measurements[name] = Measurement(np.inf, np.inf, np.inf, 0, False, problem)
            continue
        want, magnitude = wanted[name]
        measurements[name] = measure_sum_of_products(
            np.asarray(got_one), want, magnitude, terms[name], accumulation, dtype
        )
    if len(got) != len(names):
        measurements["arity"] = Measurement(
            np.inf, np.inf, np.inf, 0, False, f"returned {len(got)} outputs, expected {len(names)}"
        )
    worst_name = max(measurements, key=lambda n: measurements[n].bound_ratio)
    worst = measurements[worst_name]
    passed = all(m.passed for m in measurements.values())
    problems = "; ".join(f"{n}: {m.problem}" for n, m in measurements.items() if not m.passed)
    row.update(
        verdict="pass" if passed else "fail",
        normalized_error=max(m.normalized_error for m in measurements.values()),
        bound_ratio=worst.bound_ratio,
        max_abs_error=max(m.max_abs_error for m in measurements.values()),
        worst_output=worst_name,
        n_terms=worst.n_terms,
        problem=problems,
    )
    if passed:
        return Outcome(row, True, "")
    bounds = {
        name: error_bound(want, magnitude, terms[name], accumulation, dtype)
        for name, (want, magnitude) in wanted.items()
    }
    call_lines = implementation.repro_lines(
        spec.name, config, tuple(tested), spec.gradient_names, direction == "backward"
    )
    snippet = repro.snippet(
        dtype,
        tested,
        config,
        grad_output,
        call_lines,
        {name: want for name, (want, _) in wanted.items()},
        bounds,
    )
    row["repro"] = snippet
    report = f"{spec.name} {direction} {dtype}: {problems}\n\nRepro:\n{snippet}"
    return Outcome(row, False, report)
