"""Every written-up finding still reproduces: run each report's repro in a fresh process.

A report under ``reports/findings/<implementation>/<slug>.md`` carries a line
``Reproduces as: output`` (the repro ends by printing ``REPRODUCED: ...``) or
``Reproduces as: crash`` (the process dies: a signal or a non-zero status, never
``NOT REPRODUCED``; or, where the allocator did not notice the corruption this time, it
survives and prints ``REPRODUCED: ...`` showing the out-of-bounds access), followed by its
repro as the first ```python block. Reports without that line are skipped, as are those whose
repro imports a framework that is not installed, and those whose ``Platform:`` line names a
code path this machine does not take (conformance.implementations.code_paths.condition_holds
on torch's facts here: ``Platform: onednn>=avx512_core_fp16``), with the reason.

Every write-up states its upstream status (a section ``## Upstream status`` with a line
``- Reported upstream: ...``).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

FINDINGS = Path(__file__).resolve().parents[2] / "reports" / "findings"
REPORTS = sorted(FINDINGS.glob("*/*.md"))
TIMEOUT_S = 60
WORKERS = 2  # two at once: more only slows the tests running beside them

_KIND = re.compile(r"^Reproduces as:\s*(\w+)\b.*$", re.MULTILINE)
_PLATFORM = re.compile(r"^Platform:\s*`?([^`\n]+?)`?\s*$", re.MULTILINE)


def _platform_missing(text: str) -> str | None:
    """Why this machine cannot show the finding (its Platform: condition fails), or None."""
    found = _PLATFORM.search(text)
    if found is None:
        return None
    import torch

    from conformance.implementations.code_paths import (
        condition_holds,
        describe,
        platform_facts,
        torch_facts,
    )

    facts = {**platform_facts(None), **torch_facts(torch)}
    if condition_holds(found.group(1), facts):
        return None
    return f"needs {found.group(1)}; this machine: {describe(facts)}"


_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


# an import line inside a string: the code a repro runs in a child process
_CHILD_IMPORT = re.compile(r"^\s*(?:import\s+([\w.]+)|from\s+([\w.]+)\s+import\b)", re.MULTILINE)


def _imported_packages(code: str) -> set[str]:
    """Top-level names of the packages a repro imports, its child processes' code included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _CHILD_IMPORT.finditer(node.value):
                names.add((match.group(1) or match.group(2)).split(".")[0])
    return names


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """The repro in a fresh interpreter: a crash must not take pytest down with it."""
    return subprocess.run(
        [sys.executable, "-"],
        input=code,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _runnable(report: Path) -> str | None:
    """The repro of a report the test will run, or None where it skips."""
    text = report.read_text(encoding="utf-8")
    block = _PYTHON_BLOCK.search(text)
    if _KIND.search(text) is None or block is None:
        return None
    code = block.group(1)
    if any(importlib.util.find_spec(name) is None for name in _imported_packages(code)):
        return None
    if _platform_missing(text) is not None:
        return None
    return code


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[Path, Future[subprocess.CompletedProcess[str]]]]:
    """All repros started together, a few at a time; each test waits for its own."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        yield {
            report: pool.submit(_run, code)
            for report in REPORTS
            if (code := _runnable(report)) is not None
        }


def _outcome(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode} ({signal.Signals(-returncode).name})"
    return f"exit status {returncode}"


@pytest.mark.parametrize("report", REPORTS, ids=[f"{p.parent.name}/{p.stem}" for p in REPORTS])
def test_finding_reproduces(
    report: Path, runs: dict[Path, Future[subprocess.CompletedProcess[str]]]
) -> None:
    text = report.read_text(encoding="utf-8")
    kind = _KIND.search(text)
    if kind is None:
        pytest.skip("no 'Reproduces as:' line")
    block = _PYTHON_BLOCK.search(text)
    assert block is not None, f"{report.name}: no ```python block"
    code = block.group(1)
    missing = sorted(
        name for name in _imported_packages(code) if importlib.util.find_spec(name) is None
    )
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    elsewhere = _platform_missing(text)
    if elsewhere is not None:
        pytest.skip(f"not this machine's code path: {elsewhere}")

    run = runs[report].result() if report in runs else _run(code)
    printed = run.stdout + run.stderr
    lines = run.stdout.splitlines()
    if kind.group(1) == "output":
        assert run.returncode == 0, f"{_outcome(run.returncode)}:\n{printed}"
        assert lines and lines[-1].startswith("REPRODUCED"), printed
    elif kind.group(1) == "crash":
        # memory corruption is caught by the allocator in most processes, not in all: a
        # repro that survived must then show the out-of-bounds access itself (REPRODUCED)
        assert not any(line.startswith("NOT REPRODUCED") for line in lines), printed
        survived_but_shown = run.returncode == 0 and lines and lines[-1].startswith("REPRODUCED")
        assert run.returncode != 0 or survived_but_shown, (
            f"the repro survived ({_outcome(run.returncode)}) without showing the bug:\n{printed}"
        )
    else:
        pytest.fail(f"unknown 'Reproduces as: {kind.group(1)}' (expected output or crash)")


@pytest.mark.parametrize("report", REPORTS, ids=[f"{p.parent.name}/{p.stem}" for p in REPORTS])
def test_finding_states_its_upstream_status(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    section = text.split("## Upstream status", 1)
    assert len(section) == 2, f"{report.name}: no '## Upstream status' section"
    status = re.search(r"^- Reported upstream: (.+)$", section[1], re.MULTILINE)
    assert status is not None, f"{report.name}: no '- Reported upstream:' line"
    assert "github.com" in status.group(1) or "not found upstream as of" in status.group(1)
