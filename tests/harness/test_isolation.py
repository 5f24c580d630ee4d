"""A gate that holds: a call that kills its process or never returns is a verdict (crash,
hang) with its minimal example and a repro that proves itself; a result that depends on the
calls before it is reported as history-dependent with a replayable sequence; an oracle that
rejects a valid call fails the run as an oracle error; the report and the exit status agree."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance.implementations import Unsupported, load_implementation
from conformance.implementations.isolation import (
    CallCrashed,
    CallHung,
    InProcess,
    Isolated,
    describe_status,
)
from tests.harness.test_cli import conformance

ROOT = Path(__file__).parents[2]


def minimal(frame: pd.DataFrame, op: str, verdict: str) -> pd.Series:
    rows = frame[(frame["op"] == op) & (frame["verdict"] == verdict)]
    assert len(rows), f"no {verdict} row for {op}"
    return rows.iloc[-1]


def run_repro(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def crashing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("crashing")
    done = conformance(
        "run", "--impl=tests.harness.crashing", "--ops=conv2d,conv1d", "--dtypes=float64",
        "--profile=quick", "--seed=3", "--time-limit=0.5", "--shrink-budget=400,60",
        f"--out={out}", "--", "-k", "forward",
    )  # fmt: skip
    return out, done.returncode, done.stdout + done.stderr


def test_a_crash_and_a_hang_are_verdicts_shrunk_with_repros(
    crashing_run: tuple[Path, int, str],
) -> None:
    out, status, said = crashing_run
    assert status == 1, said
    frame = pd.read_parquet(out / "results.parquet")
    crash, hang = minimal(frame, "conv2d", "crash"), minimal(frame, "conv1d", "hang")
    assert "SIGSEGV" in crash["problem"] and "time limit of 0.5 s" in hang["problem"]
    # shrunk: the planted conditions (stride 3 on an axis; dilation 3) with little else
    assert "3" in crash["stride"] and np.prod(eval(crash["input_shape"])) <= 16
    assert "3" in hang["dilation"] and np.prod(eval(hang["weight_shape"])) <= 8
    for row in (crash, hang):
        assert row["reproduced"] == "yes", row["reproduced_said"]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Conformance report: FAIL")
    assert "PARTIAL REPORT" not in summary and " crash, " in summary and " hang." in summary
    header = json.loads((out / "header.json").read_text())
    assert header["partial"] == "no"
    for name in ("conv2d-crashing-float64-forward", "conv1d-crashing-float64-forward"):
        replay = run_repro(out / "repro" / f"{name}.py")
        assert replay.returncode == 1 and "REPRODUCED" in replay.stdout, replay.stdout


def test_the_run_goes_on_past_a_crash(crashing_run: tuple[Path, int, str]) -> None:
    out, _, said = crashing_run
    frame = pd.read_parquet(out / "results.parquet")
    # after the helper died, it was respawned: passing examples follow crashing ones
    conv2d = frame[frame["op"] == "conv2d"]
    assert (conv2d["verdict"] == "pass").any() and (conv2d["verdict"] == "crash").any()
    assert "conformance: FAIL" in said and "2 discrepant groups" in said


def test_a_history_dependent_answer_is_reported_with_its_sequence(tmp_path: Path) -> None:
    done = conformance(
        "run", "--impl=tests.harness.history_dependent", "--ops=conv2d", "--dtypes=float64",
        "--profile=quick", "--seed=1", f"--out={tmp_path}", "--", "-k", "forward",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    frame = pd.read_parquet(tmp_path / "results.parquet")
    row = minimal(frame, "conv2d", "fail")
    assert row["reproduced"] == "history-dependent", (row["reproduced"], row["reproduced_said"])
    script = (tmp_path / "repro" / "conv2d-history_dependent-float64-forward.py").read_text()
    assert "History-dependent" in script and "earlier_call_1()" in script
    assert (
        run_repro(tmp_path / "repro" / "conv2d-history_dependent-float64-forward.py").returncode
        == 1
    )
    # the call alone, in a fresh process, is right: the repro without its history says so
    alone = tmp_path / "alone.py"
    alone.write_text(row["repro_alone"])
    assert run_repro(alone).returncode == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "history-dependent" in summary


def test_an_oracle_that_rejects_a_valid_call_fails_the_run(tmp_path: Path) -> None:
    done = conformance(
        "run", "--ops=fold", "--dtypes=float64", "--profile=quick", "--seed=2",
        # the plugin plants the defect in this process: judge here (isolated, the helpers
        # judge with their own, unplanted catalogue)
        "--isolation=none",
        f"--out={tmp_path}", "--", "-p", "tests.harness.rejecting_oracle", "-k", "forward",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# Conformance report: FAIL")
    assert "oracle error" in summary and "one-block grid" in summary
    assert "conformance: FAIL" in done.stdout and "oracle error" in done.stdout


def test_isolated_calls_carry_results_in_place_updates_and_errors() -> None:
    local = load_implementation("reference")
    isolated = Isolated("reference", local, time_limit=30)
    try:
        x = np.arange(24.0).reshape(2, 3, 4)
        mean, var = np.zeros(3), np.ones(3)
        began = time.perf_counter()
        out = isolated.batch_norm(x, mean, var, None, None, training=True, momentum=0.5)
        round_trip = time.perf_counter() - began
        # the call's own time, timed in the helper: within the round trip that carried it
        assert isolated.last_seconds is not None and 0 < isolated.last_seconds < round_trip
        expected_mean, expected_var = np.zeros(3), np.ones(3)
        expected = local.batch_norm(x, expected_mean, expected_var, None, None, True, 0.5)
        assert np.array_equal(out, expected)
        assert np.array_equal(mean, expected_mean) and np.array_equal(var, expected_var)
        with pytest.raises(ValueError, match="stride"):
            isolated.conv1d(x, np.ones((1, 3, 1)), stride=0)
        assert isolated.last_seconds is None  # a call that raised took no time of its own
        assert [call.attribute for call in isolated.history()] == ["batch_norm"]
        assert "cpu flags" in isolated.platform()
    finally:
        isolated.close()


KILLED_CALLER = """
import os, sys
import numpy as np
from conformance.implementations import load_implementation
from conformance.implementations.isolation import Isolated
isolated = Isolated("reference", load_implementation("reference"), time_limit=30)
print(isolated._logs is None, flush=True)
isolated.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
print(isolated._logs, flush=True)
os._exit(3)  # killed: no close, no cleanup of its own
"""


def test_a_killed_caller_leaves_no_log_directory() -> None:
    """The helpers' log directory is made with the first helper and removed by the zygote
    once its caller is gone, closed or killed (a killed xdist worker left one in /tmp)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", KILLED_CALLER], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    before_call, logs = done.stdout.split()
    assert before_call == "True"  # none made before a helper starts
    deadline = time.monotonic() + 30
    while Path(logs).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(logs).exists()


def test_unsupported_travels_back_as_itself() -> None:
    class Refusing:
        name = "refusing"

        def conv1d(self, *args: object, **kwargs: object) -> None:
            raise Unsupported("no")

    runner = InProcess(Refusing())
    with pytest.raises(Unsupported):
        runner.call("conv1d", (np.ones(1),), {})


def test_a_wait_status_in_words() -> None:
    assert describe_status(11) == "the call killed its process: SIGSEGV (signal 11)"
    assert "out-of-memory" in describe_status(9)
    assert describe_status(3 << 8) == "the process making the call exited with status 3"
    assert "last words: 'free(): invalid pointer'" in describe_status(
        6, "free(): invalid pointer\n"
    )
    assert issubclass(CallCrashed, Exception) and CallHung(2.0).verdict == "hang"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--time-limit=0",), "--time-limit: a positive number"),
        (("--impl=torch[cpu:avx9]",), "unknown cpu level 'avx9'"),
        (("--impl=torch[gpu:1]",), "unknown code-path option"),
        (("--impl=torch[threads:2]", "--isolation=none"), "runs only in a helper process"),
        (("--shrink-budget=0",), "--shrink-budget"),
    ],
)
def test_bad_isolation_options_are_one_line(arguments: tuple[str, ...], message: str) -> None:
    done = conformance("run", "--ops=conv1d", *arguments)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_code_path_this_cpu_cannot_run_is_one_line() -> None:
    from conformance.implementations.code_paths import code_paths

    beyond = [name for name, why in code_paths() if why]
    if not beyond:
        pytest.skip("this CPU runs every code path torch has here")
    done = conformance("run", "--ops=conv1d", f"--impl={beyond[-1]}")
    assert done.returncode == 2
    assert "this CPU cannot run" in done.stderr and "caps only go down" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
