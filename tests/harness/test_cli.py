"""python -m conformance on real runs: the report files, the gate's exit status, workers and
shards that merge into the same rows, diff, partial reports, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conformance.catalogue import CATALOGUE
from conformance.cli import main

ROOT = Path(__file__).parents[2]
REPORT_FILES = {"summary.md", "report.html", "results.parquet", "results.csv", "header.json"}


def conformance(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if args and args[0] == "run":  # runs that depend on their seed alone
        cut = args.index("--") if "--" in args else len(args)  # before pytest's own arguments
        args = (*args[:cut], "--database=none", *args[cut:])
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def rows(directory: Path) -> pd.DataFrame:
    """The measured rows, without the wall-clock column that differs between runs."""
    return pd.read_parquet(directory / "results.parquet").drop(columns="seconds")


# forward, backward and the invalid calls: what these runs check needs no second derivatives
FIRST_ORDER = ("--", "-k", "not jvp and not double_backward")


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    done = conformance(
        "run", "--profile=quick", "--ops=conv1d,max_pool1d", "--dtypes=float64,bfloat16",
        "--seed=7", f"--out={out}", *FIRST_ORDER,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_run_writes_the_five_report_files(serial_run: Path) -> None:
    assert REPORT_FILES <= {path.name for path in serial_run.iterdir()}
    assert not (serial_run / ".parts").exists(), "the spools outlived the report"
    header = json.loads((serial_run / "header.json").read_text())
    assert str(header["seed"]) == "7" and header["profile"] == "quick" and header["partial"] == "no"
    assert header["examples"] == len(rows(serial_run)) > 0
    assert header["examples per second"] > 0
    parquet, csv = rows(serial_run), pd.read_csv(serial_run / "results.csv")
    assert len(parquet) == len(csv)
    assert set(parquet["op"]) == {"conv1d", "max_pool1d"}
    assert set(parquet["dtype"]) == {"float64", "bfloat16"}
    html = (serial_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1  # the errors against the bound
    assert "class='chip" in html  # the coverage view, as wrapping chips
    summary = (serial_run / "summary.md").read_text()
    assert "## Throughput" in summary and "examples per second" in summary


def test_the_header_splits_the_worker_time(serial_run: Path) -> None:
    """Start-up, generation, the regions, the checks, recording, Hypothesis's engine and the
    rest add up to the worker's time; the checks hold at least the rows' own seconds."""
    header = json.loads((serial_run / "header.json").read_text())
    split = header["time split (worker-seconds)"]
    seconds = {
        name: float(value)
        for name, value in re.findall(
            r"(start-up|generate|regions|check|record|hypothesis|other) (\d+) s", split
        )
    }
    assert set(seconds) == {
        "start-up",
        "generate",
        "regions",
        "check",
        "record",
        "hypothesis",
        "other",
    }
    worker = header["worker-seconds"]
    assert abs(sum(seconds.values()) - worker) <= 6  # each figure is rounded to the second
    measured = pd.read_parquet(serial_run / "results.parquet")["seconds"].sum()
    assert seconds["check"] >= measured - 1  # the rows' own seconds, plus invalid calls'
    assert re.fullmatch(r".*; report \(controller\) \d+\.\d s", split)
    assert "time split (worker-seconds)" in (serial_run / "summary.md").read_text()


def test_seeded_groups_of_an_op_draw_their_own_examples(serial_run: Path) -> None:
    """Under --seed each group has a seed of its own: an op's dtype x direction groups do not
    repeat each other's configurations (they all did, before)."""
    frame = rows(serial_run)
    for op, of_op in frame[frame["direction"] != "invalid call"].groupby("op"):
        draws = of_op.groupby(["dtype", "direction"])["example_key"].apply(frozenset)
        assert draws.nunique() == len(draws), f"{op}: two groups drew the same examples"
        assert of_op["example_key"].nunique() > 0.8 * len(of_op), op


def test_same_seed_same_rows_serial_or_with_workers(serial_run: Path, tmp_path: Path) -> None:
    """The serial run's rows again, from two workers (a second serial run was redundant: rows
    that a seed did not decide would not come back equal from another process layout)."""
    spread = tmp_path / "spread"
    common = ["run", "--profile=quick", "--ops=conv1d,max_pool1d", "--dtypes=float64,bfloat16"]
    done = conformance(*common, "--seed=7", f"--out={spread}", "-n", "2", *FIRST_ORDER)
    assert done.returncode == 0, done.stdout + done.stderr
    pd.testing.assert_frame_equal(rows(serial_run), rows(spread))


def test_shards_are_disjoint_and_merge_into_one_report(tmp_path: Path) -> None:
    ops = "--ops=conv1d,avg_pool1d,unfold,batch_norm"
    shards = []
    for index in (1, 2):
        out = tmp_path / f"shard{index}"
        done = conformance(
            "run", "--profile=quick", ops, "--dtypes=float32", "--seed=1",
            f"--shard={index}/2", f"--out={out}",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        shards.append(out)
    first, second = (set(rows(out)["op"]) for out in shards)
    assert first and second and not first & second
    merged = tmp_path / "merged"
    done = conformance("report", *map(str, shards), f"--out={merged}")
    assert done.returncode == 0, done.stderr
    assert set(rows(merged)["op"]) == first | second
    assert len(rows(merged)) == sum(len(rows(out)) for out in shards)
    assert REPORT_FILES <= {path.name for path in merged.iterdir()}


def test_wrong_implementation_fails_the_gate_and_diff_names_it(tmp_path: Path) -> None:
    torch_run, wrong_run = tmp_path / "torch", tmp_path / "wrong"
    common = [
        "run",
        "--profile=ci",
        "--ops=conv2d",
        "--dtypes=float64",
        "--seed=1",
    ]  # meets the planted bug
    common.append("--min-examples=0")
    # the fixture has a forward only: torch's other directions would only cost time here
    directions = ["--", "-k", "forward or invalid"]
    assert conformance(*common, f"--out={torch_run}", *directions).returncode == 0
    done = conformance(
        *common, f"--out={wrong_run}", "--impl=tests.harness.wrong_padding", *directions
    )
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (wrong_run / "summary.md").read_text()
    # the verdict's line for the group names the snippet's file
    script = re.search(r"repro `(repro/[^`]+\.py)`", summary).group(1)
    replay = subprocess.run(
        [sys.executable, str(wrong_run / script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    # it exits 1 and names the worst element: its index, expected, actual, error and bound
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert re.search(r"REPRODUCED: output\[\(.*\)\]: expected .*, got .*: error .* exceeds "
                     r"the bound .* times it\)", replay.stdout), replay.stdout  # fmt: skip
    # diff sees the implementations' groups as different groups: compare torch with a copy
    # of the wrong run relabelled as torch, so the discrepancy is new in the same group
    frame = pd.read_parquet(wrong_run / "results.parquet")
    frame["implementation"] = "torch"
    relabelled = tmp_path / "relabelled.parquet"
    frame.to_parquet(relabelled)
    compared = conformance("diff", str(torch_run), str(relabelled))
    assert compared.returncode == 1, compared.stderr
    # the fixture's forward (its invalid calls may be new too: it runs 'same' with stride 2,
    # which torch refuses, when the seed draws that call)
    new = re.split(r"## New discrepancies \(\d+\)", compared.stdout, maxsplit=1)[1]
    assert "conv2d torch float64 forward" in new.split("##", 1)[0]
    unchanged = conformance("diff", str(torch_run), str(torch_run))
    assert unchanged.returncode == 0 and "## New discrepancies (0)" in unchanged.stdout


INTERRUPTING = """
import os
import reference

name = "interrupting"
calls = 0


def conv1d(*args, **config):
    global calls
    calls += 1
    if calls == 15:
        {action}
    return reference.conv1d(*args, **config)
"""


@pytest.mark.parametrize(
    ("action", "workers", "why"),
    [
        ("raise KeyboardInterrupt", [], "interrupted"),
        ("os._exit(3)", ["-n", "2"], "xdist workers lost"),
    ],
    ids=["ctrl-c", "worker-crash"],
)
def test_a_stopped_run_leaves_a_partial_report(
    tmp_path: Path, action: str, workers: list[str], why: str
) -> None:
    (tmp_path / "interrupting.py").write_text(INTERRUPTING.format(action=action))
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable, "-m", "conformance", "run", "--profile=quick", "--ops=conv1d",
            "--dtypes=float64,float32", "--seed=0", "--impl=interrupting", f"--out={out}",
            "--database=none", *workers,
            # in the test process: isolated (the default), the same calls are verdicts (a
            # crash) of a run that goes on (test_isolation)
            "--isolation=none",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )  # fmt: skip
    # Ctrl-C: the shell's 130, and no thin-group lines for what was never run
    assert done.returncode == (130 if why == "interrupted" else 1), done.stdout + done.stderr
    assert "examples <" not in done.stdout and "never hit" not in done.stdout
    header = json.loads((out / "header.json").read_text())
    assert header["partial"].startswith(why), header["partial"]
    assert "PARTIAL REPORT" in (out / "summary.md").read_text()
    measured = rows(out)
    assert 10 <= len(measured) and (measured["verdict"] == "pass").all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"a,b\n1,2\n", "not a conformance results table"),
        (b"op,implementation,dtype\nconv1d,torch,flo", "truncated"),
        (b"PAR1 not really", "unreadable"),
    ],
    ids=["missing", "empty", "foreign", "truncated", "corrupt-parquet"],
)
def test_bad_results_files_get_one_line_and_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / ("results.parquet" if message == "unreadable" else "results.csv")
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    for argv in (["report", str(path), f"--out={out}"], ["diff", str(path), str(path)]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1, error
        assert "Traceback" not in error
    assert not out.exists()


def test_list_names_every_op(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(re.search(rf"^{spec.name} ", listed, re.M) for spec in CATALOGUE)
    assert "torch-channels_last" in listed


def test_unknown_op_is_a_usage_error(tmp_path: Path) -> None:
    done = conformance("run", "--profile=quick", "--ops=conv9d", f"--out={tmp_path}")
    assert done.returncode == 2 and "conv9d" in done.stderr + done.stdout


def test_a_recorded_discrepancy_replays_from_the_example_database(tmp_path: Path) -> None:
    """Hypothesis saves the shrunk failure; the next run tries it before anything new. (It
    keeps no database for a run with a fixed seed, so neither run gives one.)"""
    database = tmp_path / "database"

    def run(out: Path) -> pd.DataFrame:
        done = subprocess.run(
            [
                sys.executable, "-m", "conformance", "run", "--profile=ci", "--ops=conv2d",
                "--dtypes=float64", f"--database={database}", "--min-examples=0",
                "--impl=tests.harness.wrong_padding", f"--out={out}",
                "--", "-k", "forward",  # the planted bug's direction: the others cost time
            ],
            capture_output=True, text=True, cwd=ROOT, timeout=600,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stdout + done.stderr
        frame = rows(out)
        return frame[frame["direction"] == "forward"]

    for attempt in range(3):  # a ci-depth run finds the planted bug in about 19 runs of 20
        first = run(tmp_path / f"first{attempt}")
        failing = first[first["verdict"] == "fail"]
        if not failing.empty:
            break
    assert not failing.empty, "three runs never found the planted bug"
    minimal = failing["example_key"].iloc[-1]
    second = run(tmp_path / "second")
    assert minimal in set(second["example_key"].iloc[:5]), second["example_key"].iloc[:5]


def test_channels_last_is_a_second_built_in_implementation(tmp_path: Path) -> None:
    done = conformance(
        "run", "--profile=quick", "--ops=conv2d,max_pool2d", "--dtypes=float32",
        "--impl=torch,torch-channels_last", "--seed=2", f"--out={tmp_path}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    frame = rows(tmp_path)
    assert set(frame["implementation"]) == {"torch", "torch-channels_last"}
    per_impl = frame.groupby("implementation")["example_key"].apply(set)
    assert per_impl["torch"] == per_impl["torch-channels_last"]  # the same examples for both


@pytest.mark.parametrize(
    ("fixture", "op", "selection", "caught_by"),
    [
        # only a call that leaves the stride out can tell: the defaults-omitted examples
        ("pool_stride_one", "max_pool2d", "forward", "defaults omitted"),
        # the call is invalid (nothing left to mirror): only an invalid-call rule can tell
        ("reflect_pad_size", "conv2d", "invalid", "padding past what the padding mode can give"),
    ],
)
def test_a_planted_default_or_validation_bug_is_caught_at_ci_depth(
    tmp_path: Path, fixture: str, op: str, selection: str, caught_by: str
) -> None:
    out = tmp_path / "report"
    done = conformance(
        "run", f"--impl=tests.harness.{fixture}", f"--ops={op}", "--dtypes=float64",
        "--profile=ci", "--seed=1", f"--out={out}", "-n", "1", "--", "-k", selection,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    failing = pd.read_parquet(out / "results.parquet").query("verdict == 'fail'")
    assert len(failing) and failing["regions"].str.contains(caught_by, regex=False).all()
    if fixture == "pool_stride_one":  # the row says which argument the call left out
        assert failing["omitted"].str.split(";").map(lambda names: "stride" in names).all()
