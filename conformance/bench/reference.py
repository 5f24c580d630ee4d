"""python -m conformance bench: the reference timed against torch on the CPU, side by side in
one process, with this machine's NumPy GEMM rate measured in the same run.

Each case runs both implementations on the same arrays; the figure is the median of
``repeats`` timings after one warm-up call. The machine is noisy, so what carries from run to
run is the ratio reference / torch, not the seconds. The reference's peak memory for each conv
forward is measured with tracemalloc (NumPy reports its buffers to it) and set against the
im2col buffer plus the output, the least an im2col convolution can allocate.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import reference
from conformance.bench.measure import keep_freed_memory, median_seconds

Run = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # dense conv, grouped conv, transposed conv, pooling, im2col
    op: str  # the reference / torch.nn.functional name
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...] | None
    config: dict[str, Any] = field(default_factory=dict)

    def macs(self, output_shape: tuple[int, ...]) -> int:
        """Multiply-adds of the forward pass (0 for pooling and im2col)."""
        if self.weight_shape is None:
            return 0
        if self.kind == "transposed conv":  # every input element meets the whole kernel slice
            return math.prod(self.input_shape) * math.prod(self.weight_shape[1:])
        return math.prod(output_shape) * math.prod(self.weight_shape[1:])


def resnet50_cases(batch: int, size: int) -> list[Case]:
    """The distinct conv layers of ResNet-50 (bottleneck v1.5: stride on the 3x3), with the
    stem's input at ``size`` (224 in the paper) and every stage's spatial size following."""
    cases = [Case("stem 7x7/2 3->64", "dense conv", "conv2d", (batch, 3, size, size),
                  (64, 3, 7, 7), {"stride": 2, "padding": 3})]  # fmt: skip
    spatial = (size // 2 + 1) // 2  # after the stem and the 3x3/2 max pool
    inputs = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        stride = 1 if stage == 0 else 2
        out = width * 4
        before, after = spatial, (spatial - 1) // stride + 1
        label = f"stage{stage + 1}"
        cases += [
            Case(f"{label} 1x1 {inputs}->{width}", "dense conv", "conv2d",
                 (batch, inputs, before, before), (width, inputs, 1, 1)),
            Case(f"{label} 3x3/{stride} {width}->{width}", "dense conv", "conv2d",
                 (batch, width, before, before), (width, width, 3, 3),
                 {"stride": stride, "padding": 1}),
            Case(f"{label} 1x1 {width}->{out}", "dense conv", "conv2d",
                 (batch, width, after, after), (out, width, 1, 1)),
            Case(f"{label} shortcut 1x1/{stride} {inputs}->{out}", "dense conv", "conv2d",
                 (batch, inputs, before, before), (out, inputs, 1, 1), {"stride": stride}),
            Case(f"{label} 1x1 {out}->{width}", "dense conv", "conv2d",
                 (batch, out, after, after), (width, out, 1, 1)),
        ]  # fmt: skip
        if stride == 2:
            cases.append(Case(f"{label} 3x3 {width}->{width}", "dense conv", "conv2d",
                              (batch, width, after, after), (width, width, 3, 3),
                              {"padding": 1}))  # fmt: skip
        inputs, spatial = out, after
    return cases


def other_cases(batch: int, size: int) -> list[Case]:
    s = size // 2
    return [
        Case("depthwise 3x3 64", "grouped conv", "conv2d", (batch, 64, s, s), (64, 1, 3, 3),
             {"padding": 1, "groups": 64}),
        Case("grouped 3x3 g=8 128", "grouped conv", "conv2d", (batch, 128, s // 2, s // 2),
             (128, 16, 3, 3), {"padding": 1, "groups": 8}),
        Case("grouped 3x3 g=32 256", "grouped conv", "conv2d", (batch, 256, s // 2, s // 2),
             (256, 8, 3, 3), {"padding": 1, "groups": 32}),
        Case("strided 3x3/2 64->128", "dense conv", "conv2d", (batch, 64, s, s),
             (128, 64, 3, 3), {"stride": 2, "padding": 1}),
        Case("dilated 3x3 d=2 64->64", "dense conv", "conv2d", (batch, 64, s, s),
             (64, 64, 3, 3), {"padding": 2, "dilation": 2}),
        Case("transposed 4x4/2 128->64", "transposed conv", "conv_transpose2d",
             (batch, 128, s // 2, s // 2), (128, 64, 4, 4), {"stride": 2, "padding": 1}),
        Case("max pool 3x3/2", "pooling", "max_pool2d", (batch, 64, s, s), None,
             {"kernel_size": 3, "stride": 2, "padding": 1}),
        Case("avg pool 2x2/2", "pooling", "avg_pool2d", (batch, 64, s, s), None,
             {"kernel_size": 2, "stride": 2}),
        Case("im2col 3x3", "im2col", "unfold", (batch, 64, s // 2, s // 2), None,
             {"kernel_size": 3, "padding": 1}),
    ]  # fmt: skip


def quick_cases() -> list[Case]:
    return [
        Case("3x3 16->32", "dense conv", "conv2d", (2, 16, 12, 12), (32, 16, 3, 3),
             {"padding": 1}),
        Case("depthwise 3x3 16", "grouped conv", "conv2d", (2, 16, 12, 12), (16, 1, 3, 3),
             {"padding": 1, "groups": 16}),
        Case("max pool 2x2", "pooling", "max_pool2d", (2, 16, 12, 12), None,
             {"kernel_size": 2}),
    ]  # fmt: skip


def gemm_rate(dtype: np.dtype, repeats: int, size: int = 768) -> float:
    """NumPy's matmul rate on this machine in this run, GFLOP/s (2 flops per multiply-add)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def _runs(
    case: Case, dtype: np.dtype, torch: Any
) -> tuple[dict[str, tuple[Run, Run]], tuple[int, ...]]:
    """(reference, torch) callables for each direction of ``case``, and the forward output's
    shape."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(case.input_shape).astype(dtype)
    arrays = [x]
    if case.weight_shape is not None:
        arrays.append(rng.standard_normal(case.weight_shape).astype(dtype))
    forward = getattr(reference, case.op)
    backward = getattr(reference, f"{case.op}_backward")
    functional = getattr(torch.nn.functional, case.op)
    y = np.asarray(forward(*arrays, **case.config))
    grad = rng.standard_normal(y.shape).astype(dtype)
    tensors = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    torch_grad = torch.from_numpy(grad)

    def torch_forward() -> Any:
        with torch.no_grad():
            return functional(*tensors, **case.config)

    def torch_backward() -> Any:
        out = functional(*tensors, **case.config)
        return torch.autograd.grad(out, tensors, torch_grad)

    runs = {
        "forward": (lambda: forward(*arrays, **case.config), torch_forward),
        "backward": (lambda: backward(grad, *arrays, **case.config), torch_backward),
    }
    return runs, y.shape


def peak_memory(case: Case, dtype: np.dtype) -> tuple[int, int]:
    """(peak bytes the reference allocates in one conv forward, im2col buffer + output)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(case.input_shape).astype(dtype)
    assert case.weight_shape is not None
    w = rng.standard_normal(case.weight_shape).astype(dtype)
    tracemalloc.start()
    y = reference.conv2d(x, w, **case.config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    groups = case.config.get("groups", 1)  # each group has its own Cg*K rows of columns
    columns = math.prod(y.shape) // case.weight_shape[0] * math.prod(case.weight_shape[1:]) * groups
    return peak, (columns + y.size) * dtype.itemsize


def run_bench(cases: list[Case], dtypes: tuple[str, ...], repeats: int) -> pd.DataFrame:
    import torch

    rows = []
    for dtype_name in dtypes:
        dtype = np.dtype(dtype_name)
        rate = gemm_rate(dtype, repeats)
        for case in cases:
            runs, output_shape = _runs(case, dtype, torch)
            for direction, (ours, theirs) in runs.items():
                reference_s = median_seconds(ours, repeats)
                torch_s = median_seconds(theirs, repeats)
                macs = case.macs(output_shape)
                if direction == "backward":
                    macs *= 2  # grad input + grad weight
                gflops = 2 * macs / reference_s / 1e9 if macs else float("nan")
                row = {
                    "case": case.name,
                    "kind": case.kind,
                    "dtype": dtype_name,
                    "direction": direction,
                    "reference (ms)": 1e3 * reference_s,
                    "torch (ms)": 1e3 * torch_s,
                    "ratio": reference_s / torch_s,
                    "reference GFLOP/s": gflops,
                    "GEMM fraction": gflops / rate if macs else float("nan"),
                    "GEMM GFLOP/s": rate,
                }
                if direction == "forward" and case.weight_shape is not None:
                    if case.kind != "transposed conv":
                        peak, floor = peak_memory(case, dtype)
                        row["peak / (im2col + output)"] = peak / floor
                rows.append(row)
    return pd.DataFrame(rows)


def _geomean(values: pd.Series) -> float:
    values = values.dropna()
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


TARGETS = [
    # (what, dtype, selector, statistic, limit, better)
    ("dense conv forward geomean ratio", "float32", ("dense conv", "forward"), "geo", 1.5),
    ("dense conv forward worst ratio", "float32", ("dense conv", "forward"), "max", 3.0),
    ("dense conv forward geomean ratio", "float64", ("dense conv", "forward"), "geo", 1.0),
    ("dense conv forward worst ratio", "float64", ("dense conv", "forward"), "max", 2.0),
    ("grouped conv forward worst ratio", "float32", ("grouped conv", "forward"), "max", 5.0),
    # every campaign example pays for the float64 oracle: depthwise and grouped within 2x
    ("grouped conv forward worst ratio", "float64", ("grouped conv", "forward"), "max", 2.0),
    # issue 26: the float64 depthwise and grouped oracles no slower than torch's float64
    ("grouped conv fwd + bwd worst ratio", "float64", ("grouped conv", "*"), "max", 1.0),
    ("dense conv backward geomean ratio", "float32", ("dense conv", "backward"), "geo", 2.0),
    ("dense conv backward geomean ratio", "float64", ("dense conv", "backward"), "geo", 1.3),
    ("pooling and im2col worst ratio", "*", ("pooling|im2col", "*"), "max", 3.0),
]


def targets_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for what, dtype, (kinds, direction), statistic, limit in TARGETS:
        chosen = table[table["kind"].str.fullmatch(kinds)]
        if dtype != "*":
            chosen = chosen[chosen["dtype"] == dtype]
        if direction != "*":
            chosen = chosen[chosen["direction"] == direction]
        if chosen.empty:
            continue
        value = _geomean(chosen["ratio"]) if statistic == "geo" else chosen["ratio"].max()
        rows.append({"target": what, "dtype": dtype, "limit": limit, "measured": value,
                     "met": bool(value <= limit)})  # fmt: skip
    dense = table[(table["kind"] == "dense conv") & (table["direction"] == "forward")]
    dense = dense[dense["dtype"] == "float32"]
    if not dense.empty:
        fraction = _geomean(dense["GEMM fraction"])
        rows.append({"target": "dense conv forward geomean GEMM fraction", "dtype": "float32",
                     "limit": 0.5, "measured": fraction, "met": bool(fraction >= 0.5)})  # fmt: skip
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, targets: pd.DataFrame, header: dict[str, Any]) -> str:
    lines = ["# Benchmark: reference against torch (CPU)", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "ratio = reference time / torch time (median of the repeats, same run).", ""]
    lines += ["## Targets", "", str(targets.to_markdown(index=False, floatfmt=".3g")), ""]
    lines += ["## Cases", "", str(table.to_markdown(index=False, floatfmt=".3g")), ""]
    return "\n".join(lines)


def main(options: argparse.Namespace) -> int:
    import os
    import platform

    import torch

    from conformance.reporting.report import atomic_write

    cases = (
        quick_cases()
        if options.quick
        else resnet50_cases(options.batch, options.size) + other_cases(options.batch, options.size)
    )
    allocator = keep_freed_memory()
    threads = options.reference_threads
    if threads is None:  # as many as torch: each side has the same cores
        threads = torch.get_num_threads()
    saved = reference.set_threads(threads)
    began = time.monotonic()
    try:
        table = run_bench(cases, ("float32", "float64"), options.repeats)
    finally:
        reference.set_threads(saved)
    targets = targets_table(table)
    header = {
        "cases": len(cases),
        "batch": options.batch,
        "stem input": f"{options.size}x{options.size}",
        "repeats": options.repeats,
        "torch threads": torch.get_num_threads(),
        "reference threads (large grouped convs)": threads,
        "allocator": allocator,
        "cpu count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "duration (s)": round(time.monotonic() - began, 1),
    }
    text = render(table, targets, header)
    atomic_write(options.out / "bench.md", text)
    atomic_write(options.out / "bench.csv", table.to_csv(index=False))
    print(text)
    return 0
