"""The implementation seam: per-example unsupported outcomes, the scoreboard over several
implementations, the device and TF32 plumbing, and baseline entries of another version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import reference
from conformance import implementations
from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example
from conformance.implementations import BUILT_IN, installed, load_implementation
from conformance.implementations.torch_eager import TorchImplementation
from conformance.judge.check import run_example
from conformance.reporting.baseline import KnownDiscrepancy, unconfirmed
from conformance.reporting.scoreboard import scoreboard_matrix, scoreboard_table

ROOT = Path(__file__).parents[2]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_unsupported_examples_are_counted_apart_on_a_real_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_cli(
        "run",
        "--impl",
        "tests.harness.partial_pool,torch",
        "--ops",
        "max_pool2d",
        "--dtypes",
        "float64",
        "--profile",
        "quick",
        "--seed",
        "5",
        "--database",
        "none",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    mine = frame[frame["implementation"] == "partial_pool"]
    forward = mine[mine["direction"] == "forward"]
    # every ceil_mode example of the fixture is unsupported, and only those
    ceil_mode = forward["ceil_mode"].astype(str) == "True"  # parquet keeps config as text
    assert (forward["verdict"] == "unsupported").eq(ceil_mode).all()
    assert (forward["verdict"] == "unsupported").any()
    assert (
        forward.loc[forward["verdict"] == "unsupported", "problem"].str.contains("ceil_mode").all()
    )
    summary = (out / "summary.md").read_text()
    assert "## Scoreboard" in summary
    board = scoreboard_table(frame).set_index(["op", "implementation"])
    cell = board.loc[("max_pool2d", "partial_pool")]
    assert cell["unsupported"] == int((mine["verdict"] == "unsupported").sum())
    assert cell["passed"] + cell["unsupported"] == cell["examples"]
    assert cell["status"] == "partly unsupported"
    html = (out / "report.html").read_text()
    assert "class='partly-unsupported'" in html


def test_scoreboard_status_is_the_worst_verdict() -> None:
    rows = [
        ("conv2d", "a", "pass", 0.5),
        ("conv2d", "a", "fail", 3.0),
        ("conv2d", "b", "pass", 0.1),
        ("conv2d", "b", "known", np.inf),
        ("conv2d", "c", "unsupported", np.nan),
        ("max_pool2d", "a", "widened", 0.9),
    ]
    frame = pd.DataFrame(rows, columns=["op", "implementation", "verdict", "bound_ratio"])
    board = scoreboard_table(frame).set_index(["op", "implementation"])
    assert board.loc[("conv2d", "a"), "status"] == "FAIL"
    assert board.loc[("conv2d", "b"), "status"] == "known"
    # the known example's infinite ratio is excused, not the worst judged ratio
    assert board.loc[("conv2d", "b"), "worst_bound_ratio"] == 0.1
    assert board.loc[("conv2d", "c"), "status"] == "unsupported"
    assert board.loc[("max_pool2d", "a"), "status"] == "pass"
    matrix = scoreboard_matrix(scoreboard_table(frame))
    assert matrix.at["conv2d", "a"] == "1/2 F1"
    assert matrix.at["max_pool2d", "b"] == ""  # never run


def test_list_says_which_implementations_are_installed() -> None:
    result = run_cli("list")
    assert result.returncode == 0
    for name, present in installed().items():
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert ("not installed" in line) != present


def test_a_missing_framework_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"convconformance\[jax\]") as error:
        load_implementation("jax")
    assert "\n" not in str(error.value)
    assert BUILT_IN["jax"].extra == "jax"


def test_an_unavailable_device_is_refused_in_one_line() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nothing to refuse")
    result = run_cli("run", "--device", "cuda", "--ops", "conv1d", "--profile", "quick")
    assert result.returncode == 2
    assert "--device: 'cuda' is not available" in result.stdout + result.stderr
    with pytest.raises(ValueError, match="choose cpu, cuda or mps"):
        TorchImplementation(device="xla")


def test_the_controllers_check_refuses_what_loading_refuses() -> None:
    """check_implementation (the run's controller's check, which imports no torch for torch's
    CPU built-ins: test_layout) still refuses a bad code path and a device torch lacks."""
    with pytest.raises(ValueError, match="unknown code-path option"):
        implementations.check_implementation("torch[speed:max]")
    with pytest.raises(ValueError, match="code paths are CPU paths"):
        implementations.check_implementation("torch[threads:2]", device="cuda")
    if not pytest.importorskip("torch").cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' is not available"):
            implementations.check_implementation("torch", device="cuda")


def test_torch_runs_on_the_device_it_is_given() -> None:
    """The device plumbing on the CPU: tensors are made on the adapter's device and results
    come back as NumPy, forward and backward; the name says the device when it is not the
    CPU."""
    implementation = TorchImplementation(device="cpu")
    seen: list[str] = []
    tensor = implementation._tensor
    implementation._tensor = lambda *a, **k: _record(tensor(*a, **k), seen)  # type: ignore[method-assign]
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    got = implementation.conv2d(x, w)
    assert isinstance(got, np.ndarray) and got.shape == (1, 3, 3, 3)
    grads = implementation.conv2d_backward(np.ones_like(got), x, w, None)
    assert grads[0].shape == x.shape and grads[1].shape == w.shape
    assert seen and set(seen) == {"cpu"}
    assert implementation.name == "torch" and implementation.accumulation_dtype("float32") == (
        "float32"
    )


def _record(tensor: object, seen: list[str]) -> object:
    if tensor is not None:
        seen.append(str(tensor.device))  # type: ignore[attr-defined]
    return tensor


def _tf32(array: np.ndarray) -> np.ndarray:
    """float32 values with the fraction cut to TF32's 10 bits (truncation, the worst case)."""
    bits = array.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)
    return bits.view(np.float32)


class Tf32Conv:
    """conv2d as a tensor core computes it in TF32: truncated operands, exact products,
    a float32 result."""

    name = "tf32-emulation"

    def __init__(self, declared: str) -> None:
        self.declared = declared

    def accumulation_dtype(self, dtype: str) -> str:
        return self.declared

    def repro_lines(self, *args: object) -> list[str]:
        return ["got = {}"]

    def conv2d(
        self, input: np.ndarray, weight: np.ndarray, bias: object = None, **config: object
    ) -> np.ndarray:
        config.pop("padding_mode", None)
        exact = reference.conv2d(
            _tf32(input).astype(np.float64), _tf32(weight).astype(np.float64), None, **config
        )  # type: ignore[arg-type]
        return np.asarray(exact, dtype=np.float32)


def test_tf32_results_are_judged_against_tf32s_bound() -> None:
    """A TF32 result fails float32's bound and passes the bound of the tf32 class, which
    TorchImplementation declares on CUDA with TF32 allowed."""
    rng = np.random.default_rng(3)
    example = Example(
        arrays={
            "input": rng.standard_normal((2, 8, 6, 6)),
            "weight": rng.standard_normal((4, 8, 3, 3)),
            "bias": None,
        },
        config={"stride": 1, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros"},
        values="normal",
        seed=3,
    )
    spec = BY_NAME["conv2d"]
    as_float32 = run_example(spec, Tf32Conv("float32"), "float32", "forward", example)
    as_tf32 = run_example(spec, Tf32Conv("tf32"), "float32", "forward", example)
    assert not as_float32.passed
    assert as_tf32.passed, as_tf32.report
    implementation = TorchImplementation()
    implementation.tf32 = True
    assert implementation.accumulation_dtype("float32") == "tf32"
    assert implementation.accumulation_dtype("float64") == "float64"


class PerDirectionTf32(Tf32Conv):
    """TF32 declared for conv2d's forward only, through the per-op-and-direction form."""

    def __init__(self) -> None:
        super().__init__("tf32")
        self.asked: list[tuple[str, str | None, str | None]] = []

    def accumulation_dtype(  # type: ignore[override]
        self, dtype: str, op: str | None = None, direction: str | None = None
    ) -> str:
        self.asked.append((dtype, op, direction))
        return "tf32" if (op, direction) == ("conv2d", "forward") else dtype


def test_accumulation_is_asked_per_op_and_direction() -> None:
    """An adapter whose declaration takes op and direction is asked with them: its TF32
    forward is judged against TF32's bound; one asked for another op gets float32's."""
    rng = np.random.default_rng(3)
    example = Example(
        arrays={
            "input": rng.standard_normal((2, 8, 6, 6)),
            "weight": rng.standard_normal((4, 8, 3, 3)),
            "bias": None,
        },
        config={"stride": 1, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros"},
        values="normal",
        seed=3,
    )
    implementation = PerDirectionTf32()
    result = run_example(BY_NAME["conv2d"], implementation, "float32", "forward", example)
    assert result.passed, result.report
    assert ("float32", "conv2d", "forward") in implementation.asked
    assert implementations.accumulation_dtype(implementation, "float32", "conv1d", "forward") == (
        "float32"
    )
    # the one-argument form still answers for every op and direction
    assert implementations.accumulation_dtype(Tf32Conv("tf32"), "float32", "conv1d", "jvp") == (
        "tf32"
    )


def test_entries_of_another_version_are_named_unless_confirmed() -> None:
    entry = KnownDiscrepancy(
        "conv2d", "torch*", "*", "*", "stride > 1", "record", "why", "torch 2.12.0"
    )
    frame = pd.DataFrame(
        {
            "op": ["conv2d"],
            "implementation": ["torch"],
            "dtype": ["float32"],
            "direction": ["forward"],
            "regions": ["stride > 1"],
            "verdict": ["pass"],
            "problem": [""],
        }
    )
    assert unconfirmed(frame, [entry], {"torch": "2.12.0"}) == []
    found = unconfirmed(frame, [entry], {"torch": "2.13.0"})
    assert len(found) == 1 and "confirmed with torch 2.12.0" in found[0]
    # a disagreement in its region confirms it again on the new version
    confirmed = frame.assign(verdict=["known"])
    assert unconfirmed(confirmed, [entry], {"torch": "2.13.0"}) == []


def test_invalid_calls_are_made_in_a_dtype_the_implementation_runs(tmp_path: Path) -> None:
    """An implementation with no float64 kernel is called in float32, so its rejections mean
    something (not 'no kernel for float64')."""
    out = tmp_path / "report"
    result = run_cli(
        "run",
        "--impl",
        "tests.harness.float32_only",
        "--ops",
        "conv2d",
        "--dtypes",
        "float32",
        "--profile",
        "quick",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    calls = frame[frame["direction"] == "invalid call"]
    assert len(calls) and (calls["dtype"] == "float32").all()
    assert not calls["implementation_error"].str.contains("no kernel").any()


def test_the_textbook_one_pass_variance_fails_the_campaign(tmp_path: Path) -> None:
    """E[x^2] - E[x]^2 cancels when the mean is many standard deviations from 0 (the offset
    value kind): the variance bound, |mean| * std and not |mean| * mean|x|, catches it."""
    out = tmp_path / "report"
    result = run_cli(
        "run",
        "--impl",
        "tests.harness.textbook_batch_norm",
        "--ops",
        "batch_norm",
        "--dtypes",
        "float32",
        "--profile",
        "ci",
        "--seed",
        "1",
        "--min-examples",
        "0",
        "--database",
        "none",
        "--out",
        str(out),
    )
    assert result.returncode == 1, result.stdout[-3000:]
    frame = pd.read_parquet(out / "results.parquet")
    failed = frame[frame["verdict"] == "fail"]
    assert set(failed["direction"]) == {"forward"}
    # the offset kind is the one built to find it; shrinking may then step to other kinds
    # where the cancellation still exceeds the bound (normal values, 6e-5 against 3.7e-5)
    assert failed["values"].iloc[0] == "offset", failed[["values", "problem"]]


def test_report_applies_a_newer_baseline_to_recorded_failures() -> None:
    from conformance.reporting.baseline import explain_frame

    entry = KnownDiscrepancy(
        "avg_pool2d", "torch-compile", "*", "backward", "ceil_mode", "record", "why", ""
    )
    frame = pd.DataFrame(
        {
            "op": ["avg_pool2d", "avg_pool2d"],
            "implementation": ["torch-compile", "torch-compile"],
            "dtype": ["float32", "float32"],
            "direction": ["backward", "backward"],
            "regions": ["ceil_mode", "padding > 0"],
            "verdict": ["fail", "fail"],
        }
    )
    again = explain_frame(frame, [entry])
    assert again["verdict"].tolist() == ["known", "fail"]
    assert again["known_reason"].tolist()[0] == "why"
