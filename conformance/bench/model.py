"""python -m conformance bench --model SPEC: the model command's cost at real size.

Two figures, each against its target:

- The oracle's share of the checks: for every convolution layer of the network (its real
  input, captured in a forward pass), the float64 forward and backward through the oracle
  with its bound (conformance.judge.check.run_example, its implementation replaced by one that
  hands back torch's answers, computed beforehand, at no cost), against torch's own float64
  forward and backward of the same layers (torch.nn.functional, autograd for the backward).
  Target: at most 2x torch's float64 time over all the layers.
- The whole command in a fresh process: its wall time (target: 3 minutes for ResNet-50 at
  224 x 224 on two cores) and its peak resident memory, from the report's header.json.

Medians of ``repeats`` timings after a warm-up, as the rest of bench; the machine is noisy,
so the ratio carries, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COMMAND_TARGET_SECONDS = 180.0
ORACLE_TARGET_RATIO = 2.0


class Replay:
    """An implementation that returns answers computed beforehand: run_example then costs
    what the oracle and the bound cost."""

    name = "replay"

    def __init__(self, answers: dict[str, Any]) -> None:
        self._answers = answers

    def accumulation_dtype(self, dtype: str) -> str:
        return "float32" if dtype in ("float16", "bfloat16") else dtype

    def __getattr__(self, op: str) -> Any:
        answers = self.__dict__["_answers"]
        if op not in answers:
            raise AttributeError(op)
        return lambda *arrays, **config: answers[op]


def _torch_runs(torch: Any, op: str, arrays: dict[str, Any], config: dict[str, Any],
                grad: np.ndarray) -> tuple[Any, Any]:  # fmt: skip
    """torch's float64 forward and backward of one call, as callables."""
    function = getattr(torch.nn.functional, op)
    tensors = [
        None if a is None else torch.from_numpy(a.astype(np.float64)).requires_grad_(True)
        for a in arrays.values()
    ]
    knobs = {k: v for k, v in config.items() if k != "padding_mode"}
    grad64 = torch.from_numpy(grad.astype(np.float64))
    wanted = [t for t in tensors if t is not None]

    def forward() -> Any:
        with torch.no_grad():
            return function(*tensors, **knobs)

    def backward() -> Any:
        return torch.autograd.grad(function(*tensors, **knobs), wanted, grad64)

    return forward, backward


def _checked(spec: Any, replay: Replay, dtype: str, direction: str, example: Any) -> Any:
    """One check of torch's answer, precomputed: the oracle, the bound, the measurement."""
    from conformance.judge.check import run_example

    outcome = run_example(spec, replay, dtype, direction, example)
    assert outcome.passed, outcome.report  # torch's own answer, within its bound
    return outcome


def oracle_table(model: Any, shape: tuple[int, ...], repeats: int, seed: int) -> pd.DataFrame:
    """Per convolution call and direction: the oracle with its bound, and torch in float64."""
    import torch

    from conformance.bench.measure import median_seconds
    from conformance.catalogue import BY_NAME
    from conformance.implementations.torch_eager import TorchImplementation
    from conformance.model import checks, run

    threads = torch.get_num_threads()
    layers = run.capture(model, shape, seed)
    adapter = TorchImplementation()  # sets its own thread count: put back for the timings
    torch.set_num_threads(threads)
    rows = []
    for layer in layers:
        for check in layer.checks:
            if not check.op.startswith("conv") or check.grad_output is None:
                continue
            spec = BY_NAME[check.op]
            example = checks.example_of(check, seed=layer.index)
            dtype = checks.dtype_of(check)
            arrays = list(check.arrays.values())
            answers = {
                spec.name: getattr(adapter, spec.name)(*arrays, **check.config),
                f"{spec.name}_backward": getattr(adapter, f"{spec.name}_backward")(
                    check.grad_output, *arrays, **check.config
                ),
            }
            replay = Replay(answers)
            forward, backward = _torch_runs(torch, spec.name, check.arrays, check.config,
                                            check.grad_output)  # fmt: skip
            for direction, torch_run in (("forward", forward), ("backward", backward)):
                oracle = partial(_checked, spec, replay, dtype, direction, example)
                rows.append(
                    {
                        "layer": layer.path,
                        "op": spec.name,
                        "direction": direction,
                        "input_shape": "x".join(map(str, layer.input_shapes[0])),
                        "oracle with bound (ms)": 1e3 * median_seconds(oracle, repeats),
                        "torch float64 (ms)": 1e3 * median_seconds(torch_run, repeats),
                    }
                )
    table = pd.DataFrame(rows)
    table["ratio"] = table["oracle with bound (ms)"] / table["torch float64 (ms)"]
    return table


def command_figures(spec: str, shape: str) -> dict[str, Any]:
    """The model command in a fresh process: exit status, wall time, its header."""
    with tempfile.TemporaryDirectory() as directory:
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "conformance", "model", spec, "--input-shape", shape,
             "--out", directory],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - began
        header_path = Path(directory) / "header.json"
        header = json.loads(header_path.read_text()) if header_path.exists() else {}
    return {
        "exit status": done.returncode,
        "wall with start-up (s)": round(wall, 1),
        "verdict": (done.stdout.splitlines() or [done.stderr.strip()])[0],
        **{k: header[k] for k in header if k.endswith("(s)") or k.startswith("peak")},
    }


def main(options: argparse.Namespace) -> int:
    import torch

    from conformance.bench.measure import keep_freed_memory
    from conformance.model.command import load_model, parse_input_shape
    from conformance.reporting.report import atomic_write

    shape = parse_input_shape(options.input_shape)
    allocator = keep_freed_memory()
    began = time.monotonic()
    torch.manual_seed(0)  # the initialization the model command gets with its default seed
    table = oracle_table(load_model(options.model), shape, options.repeats, seed=0)
    oracle_ms, torch_ms = table["oracle with bound (ms)"].sum(), table["torch float64 (ms)"].sum()
    ratio = oracle_ms / torch_ms
    figures = command_figures(options.model, options.input_shape)
    wall = float(figures.get("wall (s)", np.inf))
    targets = pd.DataFrame(
        [
            {"target": "oracle with bound / torch float64, all conv layers, fwd + bwd",
             "limit": ORACLE_TARGET_RATIO, "measured": ratio, "met": ratio <= ORACLE_TARGET_RATIO},
            {"target": "model command wall time (s)", "limit": COMMAND_TARGET_SECONDS,
             "measured": wall, "met": wall <= COMMAND_TARGET_SECONDS},
        ]
    )  # fmt: skip
    header = {
        "model": options.model,
        "input shape": options.input_shape,
        "conv calls": len(table) // 2,
        "oracle with bound, total (s)": round(oracle_ms / 1e3, 2),
        "torch float64, total (s)": round(torch_ms / 1e3, 2),
        **{f"command: {k}": v for k, v in figures.items()},
        "repeats": options.repeats,
        "torch threads": torch.get_num_threads(),
        "allocator": allocator,
        "duration (s)": round(time.monotonic() - began, 1),
    }
    lines = ["# Benchmark: the model command", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "## Targets", "", str(targets.to_markdown(index=False, floatfmt=".3g")), ""]
    lines += ["## Layers", "", str(table.to_markdown(index=False, floatfmt=".3g")), ""]
    text = "\n".join(lines)
    atomic_write(options.out / "bench-model.md", text)
    atomic_write(options.out / "bench-model.csv", table.to_csv(index=False))
    print(text)
    return 0
