"""python -m conformance bench: the table it writes, the targets' arithmetic, and the memory
figure. No timing is asserted: the machine is noisy, and a benchmark measures, a test checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance.bench import reference as bench
from conformance.cli import main


def test_quick_bench_writes_both_dtypes_and_directions_of_every_case(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--repeats=1", f"--out={tmp_path}"]) == 0
    table = pd.read_csv(tmp_path / "bench.csv")
    cases = {case.name for case in bench.quick_cases()}
    assert set(table["case"]) == cases
    assert len(table) == len(cases) * 2 * 2  # float32, float64 x forward, backward
    assert set(table["dtype"]) == {"float32", "float64"}
    assert (table["reference (ms)"] > 0).all() and (table["torch (ms)"] > 0).all()
    ratio = table["reference (ms)"] / table["torch (ms)"]
    # the file's ratio divides seconds, this one milliseconds (each scaled by 1e3): a few
    # roundings apart, so within rtol 1e-9 whatever the times
    np.testing.assert_allclose(table["ratio"], ratio, rtol=1e-9)
    pooling = table[table["kind"] == "pooling"]
    assert pooling["GEMM fraction"].isna().all(), "pooling has no multiply-adds to rate"
    text = (tmp_path / "bench.md").read_text()
    assert "## Targets" in text and "- **allocator**:" in text


def _row(kind: str, dtype: str, direction: str, ratio: float, fraction: float) -> dict:
    return {"case": f"{kind} {ratio}", "kind": kind, "dtype": dtype, "direction": direction,
            "ratio": ratio, "GEMM fraction": fraction}  # fmt: skip


def test_targets_take_the_geometric_mean_and_the_worst_case() -> None:
    table = pd.DataFrame([
        _row("dense conv", "float32", "forward", 1.0, 0.8),
        _row("dense conv", "float32", "forward", 4.0, 0.2),  # geomean 2.0, worst 4.0
        _row("dense conv", "float32", "backward", 1.5, 0.5),
        _row("pooling", "float64", "backward", 2.5, float("nan")),
        _row("im2col", "float32", "forward", 3.5, float("nan")),
    ])  # fmt: skip
    targets = bench.targets_table(table).set_index(["target", "dtype"])
    geomean = targets.loc[("dense conv forward geomean ratio", "float32")]
    assert geomean["measured"] == pytest.approx(2.0) and not geomean["met"]
    worst = targets.loc[("dense conv forward worst ratio", "float32")]
    assert worst["measured"] == 4.0 and not worst["met"]
    backward = targets.loc[("dense conv backward geomean ratio", "float32")]
    assert backward["measured"] == pytest.approx(1.5) and backward["met"]
    pooling = targets.loc[("pooling and im2col worst ratio", "*")]
    assert pooling["measured"] == 3.5 and not pooling["met"]
    fraction = targets.loc[("dense conv forward geomean GEMM fraction", "float32")]
    assert fraction["measured"] == pytest.approx(0.4) and not fraction["met"]
    assert ("dense conv forward geomean ratio", "float64") not in targets.index  # no rows


@pytest.mark.parametrize("name", ["depthwise 3x3 16", "3x3 16->32"])
def test_conv_peak_memory_is_the_columns_and_output_and_little_more(name: str) -> None:
    """No copy of the padded input per group or per tap: the peak stays within the im2col
    buffer plus the output, the padded input and one output-sized product (under 2x here)."""
    case = next(case for case in bench.quick_cases() if case.name == name)
    peak, floor = bench.peak_memory(case, np.dtype("float64"))
    groups = case.config.get("groups", 1)
    per_group_taps = math.prod(case.weight_shape[1:])  # type: ignore[index]
    assert floor > per_group_taps * groups * 8  # the floor counts every group's columns
    assert floor <= peak < 2 * floor
