"""The repro of one layer alone: its real arguments in a .npz beside a script that recomputes
the layer with the implementation under test (the adapter's own repro lines: NumPy plus
torch, or the user's module) and prints each output's error against the float64 oracle and
its bound, stored in the same .npz. A real layer's arrays are too large for the campaign's
literal snippets.

The oracle and the bound are computed exactly as conformance.judge.check.run_example computes
them: the reference in float64 on the arrays rounded to the tested dtype, and the catalogue
entry's error model at the implementation's declared accumulation precision.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from conformance import implementations
from conformance.catalogue.spec import OpSpec
from conformance.judge.check import bounds, oracle, prepare
from conformance.model.checks import CapturedExample
from conformance.reporting.report import atomic_write


def oracle_and_bounds(
    spec: OpSpec, implementation: Any, dtype: str, direction: str, example: CapturedExample
) -> tuple[dict[str, np.ndarray | None], dict[str, np.ndarray | None], dict[str, np.ndarray]]:
    """(the arrays as tested, the oracle's outputs by name, each inexact output's bound)."""
    prepared = prepare(spec, dtype, direction, example)
    oracle(prepared)
    accumulation = implementations.accumulation_dtype(implementation, dtype, spec.name, direction)
    found = bounds(prepared, accumulation)
    return prepared.tested, prepared.wanted, {name: t.bound for name, t in found.items()}


def file_stem(path: str) -> str:
    """A file name for a layer path ('layer2.0.downsample.0' stays, '#' and '/' do not)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path).strip("._") or "layer"


def write_repro(
    directory: Path,
    layer_path: str,
    spec: OpSpec,
    implementation: Any,
    dtype: str,
    direction: str,
    example: CapturedExample,
) -> Path:
    """Write <layer>.npz and <layer>.py under ``directory``; returns the script's path."""
    tested, wanted, bounds = oracle_and_bounds(spec, implementation, dtype, direction, example)
    stem = f"{file_stem(layer_path)}-{spec.name}-{direction}"
    storable = "float32" if dtype == "bfloat16" else dtype  # NumPy's .npz knows no bfloat16
    data: dict[str, np.ndarray] = {
        name: array.astype(storable) for name, array in tested.items() if array is not None
    }
    data.update({f"expected_{k}": v for k, v in wanted.items() if v is not None})
    data.update({f"bound_{k}": v for k, v in bounds.items()})
    if direction == "backward":
        assert example.upstream is not None
        data["grad_output"] = example.upstream.astype(storable)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **data)
    atomic_write(directory / f"{stem}.npz", buffer.getvalue())
    names = spec.outputs(example.config) if direction == "forward" else spec.gradient_names
    call_lines = implementation.repro_lines(
        spec.name, example.config, tuple(tested), (*names, *(
            spec.mutated if direction == "forward" else ())), direction == "backward", dtype,
    )  # fmt: skip
    lines = [
        f'"""Layer {layer_path!r} alone: {spec.name} {direction} in {dtype} on its real',
        f"arguments, through {implementation.name}, against the float64 oracle and its bound",
        "(both stored in the .npz beside this file). Run it from where the implementation",
        'imports; a worst error / bound above 1 is the discrepancy."""',
        "",
        "import pathlib",
        "",
        "import numpy as np",
        "",
        f"data = np.load(pathlib.Path(__file__).with_name({stem + '.npz'!r}))",
    ]
    lines += [f"{name} = data[{name!r}]" if name in data else f"{name} = None" for name in tested]
    lines.append("grad_output = data['grad_output'] if 'grad_output' in data else None")
    lines.append(f"config = {dict(example.config)!r}")
    lines += call_lines
    lines += [
        "",
        "for name, actual in got.items():",
        "    if actual is None or f'expected_{name}' not in data:",
        "        continue",
        "    expected = data[f'expected_{name}']",
        "    actual = np.asarray(actual, dtype=np.float64)",
        "    error = np.abs(actual - expected)",
        "    if f'bound_{name}' not in data:  # compared bit for bit",
        "        same = np.array_equal(actual, expected, equal_nan=True)",
        "        print(name, 'bitwise equal:', bool(same))",
        "        continue",
        "    bound = data[f'bound_{name}']",
        "    with np.errstate(divide='ignore', invalid='ignore'):",
        "        ratio = np.where(error == 0, 0.0, error / bound)",
        "    worst = np.unravel_index(int(np.nanargmax(ratio)), ratio.shape)",
        "    print(name, 'max |error|:', np.nanmax(error), 'worst error / bound:', ratio[worst],",
        "          'at', tuple(int(i) for i in worst), '(> 1 is a discrepancy)')",
    ]
    script = directory / f"{stem}.py"
    atomic_write(script, "\n".join(lines) + "\n")
    return script
