"""pytest plugin: the recorder, the implementation under test, and the report at the end.

    pytest tests/conformance --conformance-report DIR [--conformance-impl torch|reference|mod:attr]

Loaded by ``-p conformance.pytest_plugin`` (pyproject's addopts).
"""

from __future__ import annotations

import datetime
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import conformance.profiles  # noqa: F401  (registers the Hypothesis profiles)
from conformance.baseline import KnownDiscrepancy, load_baseline
from conformance.catalogue import CATALOGUE
from conformance.implementations import load_implementation
from conformance.recorder import Recorder
from conformance.report import discrepancies, missed_regions, results_table, write_report

RECORDER = pytest.StashKey[Recorder]()
SHORTFALLS = pytest.StashKey[list[str]]()
STARTED = pytest.StashKey[tuple[float, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption(
        "--conformance-report",
        metavar="DIR",
        default=None,
        help="write results.csv and summary.md for every recorded example into DIR",
    )
    group.addoption(
        "--conformance-min-examples",
        metavar="N",
        type=int,
        default=0,
        help="fail the run if an op x dtype x direction that ran recorded fewer than N "
        "examples, or if a coverage region of an op that ran was never hit",
    )
    group.addoption(
        "--conformance-target",
        action="store_true",
        help="steer Hypothesis toward each op's largest bound ratio (hypothesis.target). It "
        "concentrates examples near the worst case found, at the cost of coverage: use it "
        "with the thorough profile, not for the gate",
    )
    group.addoption(
        "--conformance-baseline",
        metavar="CSV",
        default=None,
        help="known discrepancies (default: reports/baseline.csv under the rootdir)",
    )
    group.addoption(
        "--conformance-impl",
        metavar="SPEC",
        default="torch",
        help="implementation under test: torch, reference, or package.module:attribute",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RECORDER] = Recorder()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    config.stash[STARTED] = (time.monotonic(), started)


@pytest.fixture(scope="session")
def conformance_recorder(request: pytest.FixtureRequest) -> Recorder:
    return request.config.stash[RECORDER]


def baseline_path(config: pytest.Config) -> Path:
    given = config.getoption("conformance_baseline")
    return Path(given) if given else config.rootpath / "reports" / "baseline.csv"


@pytest.fixture(scope="session")
def conformance_baseline(request: pytest.FixtureRequest) -> list[KnownDiscrepancy]:
    try:
        return load_baseline(baseline_path(request.config))
    except ValueError as error:
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("conformance_target"))


@pytest.fixture(scope="session")
def implementation(request: pytest.FixtureRequest) -> Any:
    try:
        return load_implementation(request.config.getoption("conformance_impl"))
    except ValueError as error:
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_header(config: pytest.Config) -> dict[str, Any]:
    began, started = config.stash[STARTED]
    return {
        "started (UTC)": started,
        "duration (s)": round(time.monotonic() - began, 1),
        "implementation": config.getoption("conformance_impl"),
        "profile": config.getoption("hypothesis_profile", None) or "ci (default)",
        "seed": config.getoption("hypothesis_seed", None) or "random",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{package: _version(package) for package in ("torch", "numpy", "hypothesis", "pandas")},
    }


def shortfalls(config: pytest.Config) -> list[str]:
    """What falls short of --conformance-min-examples: thin groups and unhit regions."""
    minimum = config.getoption("conformance_min_examples")
    recorder = config.stash[RECORDER]
    if not minimum or not len(recorder):
        return []
    frame = recorder.frame()
    table = results_table(frame)
    thin = table[table["examples"] < minimum]
    found = [
        f"{row.op} {row.implementation} {row.dtype} {row.direction}: {row.examples} examples"
        f" < {minimum}"
        for row in thin.itertuples()
    ]
    return found + [f"coverage region never hit: {m}" for m in missed_regions(frame, CATALOGUE)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    recorder = config.stash[RECORDER]
    config.stash[SHORTFALLS] = shortfalls(config)
    if config.stash[SHORTFALLS] and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    directory = config.getoption("conformance_report")
    if directory is None or not len(recorder):
        return
    baseline = load_baseline(baseline_path(config))
    write_report(recorder.frame(), Path(directory), run_header(config), CATALOGUE, baseline)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for shortfall in config.stash.get(SHORTFALLS, []):
        terminalreporter.write_line(f"conformance: FAILED: {shortfall}", red=True)
    directory = config.getoption("conformance_report")
    recorder = config.stash[RECORDER]
    if directory is None or not len(recorder):
        return
    found = discrepancies(recorder.frame())
    terminalreporter.write_line(
        f"conformance: {len(recorder)} examples, {len(found)} discrepant groups; "
        f"report in {directory}/summary.md"
    )
