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


def test_a_judged_example_carries_each_step_it_took(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the step profile on, judge_batch's row holds the seconds of every step, and
    they add up to no more than the row's own seconds (they split it). A runner that times
    its calls splits the call step into the call's own seconds and the hand-off; an
    implementation called bare leaves the call step whole."""
    import json

    from conformance.campaign.judging import judge_batch
    from conformance.catalogue.example import Example
    from conformance.implementations.calls import InProcess
    from conformance.implementations.torch_eager import TorchImplementation
    from conformance.judge import steps

    monkeypatch.setattr(steps, "ENABLED", True)
    arrays = {"input": np.linspace(-1, 1, 2 * 3 * 7).reshape(2, 3, 7),
              "weight": np.linspace(1, -1, 4 * 3 * 2).reshape(4, 3, 2), "bias": None}  # fmt: skip
    config = {"stride": 2, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros"}
    example = Example(arrays, config, "normal", 0)
    for runner in (InProcess(TorchImplementation()), TorchImplementation()):
        for direction in ("forward", "backward"):
            (judged,) = judge_batch(runner, {}, "conv1d", "float64", direction, [(example, [])])
            assert judged.row["verdict"] == "pass"
            spent = json.loads(judged.row["step_seconds"])
            timed = isinstance(runner, InProcess)
            assert set(spent) == set(steps.STEPS) - (set() if timed else {"hand-off"})
            assert all(s > 0 for s in spent.values())
            assert sum(spent.values()) <= judged.row["seconds"]
    assert steps.taken() == "{}"  # each row took its own and left nothing behind


def test_a_steps_seconds_split_off_keep_what_was_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.judge import steps

    monkeypatch.setattr(steps, "ENABLED", True)
    monkeypatch.setattr(steps, "_SPENT", {"call": 0.010})
    steps.split_off("call", 0.004, "hand-off")
    assert steps._SPENT == pytest.approx({"call": 0.004, "hand-off": 0.006})
    steps.split_off("call", None, "hand-off")  # unknown: nothing moves
    assert steps._SPENT == pytest.approx({"call": 0.004, "hand-off": 0.006})
    steps.split_off("call", 0.5, "hand-off")  # a clock that ran ahead keeps the whole step
    assert steps._SPENT == pytest.approx({"call": 0.004, "hand-off": 0.006})


def test_the_step_profile_is_off_by_default() -> None:
    from conformance.judge import steps

    assert not steps.ENABLED and steps.taken() == ""


def test_check_profile_splits_the_rows_seconds_by_step() -> None:
    from conformance.bench.check_profile import CHECK, profile_tables

    frame = pd.DataFrame({
        "op": ["a", "a", "b"],
        "seconds": [0.004, 0.002, 0.003],
        "step_seconds": ['{"oracle": 0.002, "call": 0.001}', '{"oracle": 0.001}',
                         '{"bound": 0.003}'],
    })  # fmt: skip
    overall, by_op = profile_tables(frame)
    assert overall.loc["oracle", "ms per example"] == pytest.approx(1.0)  # 3 ms over 3
    assert overall.loc["bound", "share of the check"] == pytest.approx(3 / 9)
    assert overall.loc["(unaccounted)", "ms per example"] == pytest.approx(2 / 3)
    assert overall.loc[CHECK, "ms per example"] == pytest.approx(3.0)
    assert by_op.loc["a", "oracle"] == pytest.approx(1.5) and by_op.loc["a", "examples"] == 2
    assert by_op.loc["b", "call"] == 0 and by_op.loc["a", "check"] == pytest.approx(3.0)


def test_handoff_times_both_ways_of_sending_a_call(tmp_path: Path) -> None:
    """The hand-off bench's trips reach their helpers and come back on both sides (a helper
    that never answered would hang here), and its table has each side's CPU per trip. In a
    process of its own: it forks, which a test process with other libraries' threads (JAX's)
    should not."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "conformance.bench.handoff", "--calls", "40"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "handoff.md").read_text(encoding="utf-8")
    for row in ("conv2d forward", "conv2d backward"):
        assert f"| {row}" in table
    assert "wire / multiprocessing" in table and "multiprocessing caller (us)" in table


def test_only_a_runner_that_timed_its_call_splits_the_call_step() -> None:
    from conformance.implementations.calls import InProcess
    from conformance.judge.check import _own_seconds

    class AnswersEverything:  # a user's implementation may answer any attribute
        def __getattr__(self, name: str) -> object:
            return lambda *args: None

    runner = InProcess(AnswersEverything())
    assert _own_seconds(runner) is None  # no call yet
    runner.call("conv1d", (), {})
    assert isinstance(_own_seconds(runner), float)
    assert _own_seconds(AnswersEverything()) is None
