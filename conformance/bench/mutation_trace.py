"""A pytest plugin for the mutation run: which lines of a traced package each campaign test
executes (python -m conformance.bench.mutation, its trace step).

Loaded with ``-p conformance.bench.mutation_trace``; it does nothing unless
CONFORMANCE_MUTATION_TRACE names the package directory to trace and the file prefix to write,
as ``DIRECTORY|PREFIX``. Each test's lines are collected by ``sys.settrace`` (only frames of
files under the directory get a line tracer, so the rest of the run pays one call per
function) and written at the end of the session to ``PREFIX.<worker>.json``:
``{test name: {file name: [line, ...]}}``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

ENVIRONMENT = "CONFORMANCE_MUTATION_TRACE"


class LineTracer:
    """The lines executed under one directory, per test."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory.resolve()) + os.sep
        self.lines: dict[str, dict[str, set[int]]] = {}
        self.current: dict[str, set[int]] = {}
        self._files: dict[str, str | None] = {}  # code file -> its name under the directory

    def _name(self, filename: str) -> str | None:
        if filename not in self._files:
            resolved = os.path.realpath(filename)
            inside = resolved.startswith(self.directory)
            self._files[filename] = resolved[len(self.directory) :] if inside else None
        return self._files[filename]

    def calls(self, frame: FrameType, event: str, argument: Any) -> Any:
        name = self._name(frame.f_code.co_filename)
        if name is None:
            return None
        hit = self.current.setdefault(name, set())
        hit.add(frame.f_lineno)

        def lines(frame: FrameType, event: str, argument: Any) -> Any:
            if event == "line":
                hit.add(frame.f_lineno)
            return lines

        return lines

    def start(self, test: str) -> None:
        self.current = self.lines.setdefault(test, {})
        threading.settrace(self.calls)
        sys.settrace(self.calls)

    def stop(self) -> None:
        sys.settrace(None)
        threading.settrace(None)

    def write(self, path: Path) -> None:
        found = {
            test: {name: sorted(lines) for name, lines in files.items()}
            for test, files in self.lines.items()
        }
        path.write_text(json.dumps(found))


def import_lines(directory: Path, module: str) -> dict[str, list[int]]:
    """The lines of the package under ``directory`` that importing ``module`` runs (its
    factories: a function made by another at import time carries what that one did)."""
    tracer = LineTracer(directory)
    tracer.start("import")
    try:
        importlib.import_module(module)
    finally:
        tracer.stop()
    return {name: sorted(lines) for name, lines in tracer.lines["import"].items()}


_TRACER: list[tuple[LineTracer, Path]] = []


def pytest_configure(config: pytest.Config) -> None:
    setting = os.environ.get(ENVIRONMENT)
    if setting:
        directory, _, prefix = setting.partition("|")
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _TRACER.append((LineTracer(Path(directory)), Path(f"{prefix}.{worker}.json")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    if not _TRACER:
        return (yield)
    tracer = _TRACER[0][0]
    tracer.start(item.name)
    try:
        return (yield)
    finally:
        tracer.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for tracer, path in _TRACER:
        tracer.write(path)
