"""Each catalogue op a network called, checked on its real arguments: through the
implementation under test and the float64 oracle, forward and backward, with the campaign's
own bounds and verdicts (conformance.judge.check.run_example) and its baseline of known
discrepancies. The backward check's upstream gradient is the real loss's, captured during
the network's backward pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance import implementations
from conformance.catalogue import BY_NAME
from conformance.catalogue.dtypes import dtype_name
from conformance.catalogue.example import Example
from conformance.judge.check import regions_hit, run_example
from conformance.model.trace import Check, Layer
from conformance.reporting.baseline import KnownDiscrepancy, explain, isolating
from conformance.reporting.results import FAILING

CAPTURED = "captured"  # the value kind of an example taken from a real network


@dataclass(frozen=True)
class CapturedExample(Example):
    """An example made of a layer's real arguments; its upstream gradient is the one the
    real loss sent back to that layer, not one drawn from the seed."""

    upstream: np.ndarray | None = None

    def grad_output(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.upstream is None:
            raise ValueError("no gradient of the loss reached this call")
        if self.upstream.shape != tuple(shape):
            raise ValueError(
                f"the captured gradient has shape {self.upstream.shape}, the output {shape}"
            )
        return self.upstream


def example_of(check: Check, seed: int) -> CapturedExample:
    return CapturedExample(check.arrays, check.config, CAPTURED, seed, upstream=check.grad_output)


def dtype_of(check: Check) -> str:
    first = next(a for a in check.arrays.values() if a is not None)
    return dtype_name(first.dtype)


def _skipped(layer: Layer, check: Check, direction: str, why: str) -> dict[str, Any]:
    return {
        "layer": layer.path,
        "layer_index": layer.index,
        "op": check.op,
        "direction": direction,
        "dtype": dtype_of(check),
        "verdict": "not checked",
        "bound_ratio": np.nan,
        "problem": why,
    }


def _reason_not_run(implementation: Any, check: Check, direction: str, dtype: str) -> str | None:
    spec = BY_NAME[check.op]
    op = spec.name if direction == "forward" else f"{spec.name}_backward"
    if direction not in spec.directions:
        return f"the catalogue checks {spec.name} {', '.join(spec.directions)} only"
    if dtype not in spec.dtypes:
        return f"the catalogue judges {spec.name} in {', '.join(spec.dtypes)} only"
    if not implementations.implements(implementation, op):
        return f"the implementation under test has no {op}"
    if not implementations.supports(implementation, op, dtype):
        return f"the implementation under test does not run {op} in {dtype}"
    if direction == "backward" and check.grad_output is None:
        return "no gradient of the loss reached this call"
    return None


def check_layers(
    layers: Sequence[Layer], implementation: Any, baseline: list[KnownDiscrepancy]
) -> list[dict[str, Any]]:
    """One row per (catalogue call, direction), in forward order; the campaign's columns
    plus the layer's path and position. An oracle over the im2col memory budget stops the
    run with a ValueError naming the layer."""
    rows = []
    for layer in layers:
        for position, check in enumerate(layer.checks):
            spec = BY_NAME[check.op]
            dtype = dtype_of(check)
            example = example_of(check, seed=layer.index)
            for direction in ("forward", "backward"):
                why = _reason_not_run(implementation, check, direction, dtype)
                if why is not None:
                    rows.append(_skipped(layer, check, direction, why))
                    continue
                where = {
                    "op": spec.name,
                    "implementation": implementation.name,
                    "dtype": dtype,
                    "direction": direction,
                    "regions": ";".join(regions_hit(spec, example, dtype)),
                }
                quarantine = isolating(baseline, where) is not None
                began = time.perf_counter()
                outcome = run_example(
                    spec, implementation, dtype, direction, example, quarantine=quarantine
                )
                if outcome.row["verdict"] == "oracle error":  # too big, or a bad argument
                    problem = str(outcome.row["problem"]).split(": ", 1)[-1]
                    raise ValueError(f"layer {layer.path!r} ({spec.name} {direction}): {problem}")
                row = dict(outcome.row)
                row.pop("repro", None)  # conformance.model.replay writes the first one
                row.update(layer=layer.path, layer_index=layer.index, call=position)
                row["seconds"] = time.perf_counter() - began
                known = None if outcome.passed else explain(baseline, row)
                if known is not None:
                    row.update(verdict="known", known_reason=known.reason)
                    row["explained_verdict"] = outcome.row["verdict"]
                rows.append(row)
    return rows


def layer_verdict(layer: Layer, rows: Sequence[dict[str, Any]]) -> tuple[str, float, str]:
    """(verdict, worst bound ratio, problem) of a layer from its check rows: fail if any
    failed or raised, else known, pass (widened counts as a pass), unsupported, or 'not
    checked' with the reason."""
    if not layer.checks:
        ops = sorted({call.op for call in layer.calls}) or [layer.kind]
        return "not checked", math.nan, f"no catalogue op for {', '.join(ops)}"
    verdicts = [row["verdict"] for row in rows]
    ratios = [float(row["bound_ratio"]) for row in rows if not _missing(row.get("bound_ratio"))]
    worst = max(ratios) if ratios else math.nan
    failing = [row for row in rows if row["verdict"] in FAILING]
    if failing:
        first = failing[0]
        return "fail", worst, f"{first['op']} {first['direction']}: {first['problem']}"
    for verdict in ("known", "pass", "widened", "unsupported"):
        if verdict in verdicts:
            found = next(row for row in rows if row["verdict"] == verdict)
            problem = str(found.get("known_reason") or found.get("problem") or "")
            return ("pass" if verdict == "widened" else verdict), worst, problem
    return "not checked", worst, "; ".join(sorted({str(row["problem"]) for row in rows}))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
