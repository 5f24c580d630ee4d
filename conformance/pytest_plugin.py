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
from conformance.catalogue import CATALOGUE
from conformance.implementations import load_implementation
from conformance.recorder import Recorder
from conformance.report import discrepancies, write_report

RECORDER = pytest.StashKey[Recorder]()
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    directory = session.config.getoption("conformance_report")
    recorder = session.config.stash[RECORDER]
    if directory is None or not len(recorder):
        return
    write_report(recorder.frame(), Path(directory), run_header(session.config), CATALOGUE)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    directory = config.getoption("conformance_report")
    recorder = config.stash[RECORDER]
    if directory is None or not len(recorder):
        return
    found = discrepancies(recorder.frame())
    terminalreporter.write_line(
        f"conformance: {len(recorder)} examples, {len(found)} discrepant groups; "
        f"report in {directory}/summary.md"
    )
