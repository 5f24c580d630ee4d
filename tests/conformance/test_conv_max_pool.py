"""conv_max_pool's backward bound: which of a window's elements takes the gradient is open
only where the convolution's error leaves the maximum open. A fixture that takes the last of
tied maxima (torch takes the first) passes; one that takes the window's minimum fails."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings

from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example
from conformance.implementations.user_module import ModuleImplementation
from conformance.judge.check import run_example

FIXTURE = "tests.harness.conv_pool_routing"
MODULE = importlib.import_module(FIXTURE)
SPEC = BY_NAME["conv_max_pool"]


@pytest.fixture
def route(request: pytest.FixtureRequest) -> Iterator[ModuleImplementation]:
    MODULE.ROUTE = request.param
    yield ModuleImplementation(FIXTURE, MODULE)
    MODULE.ROUTE = "last"


@pytest.mark.parametrize("route", ["last"], indirect=True)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_the_last_of_tied_maxima_passes(route: ModuleImplementation, dtype: str) -> None:
    @settings(max_examples=40, database=None)
    @given(example=SPEC.examples())
    def judged(example: Example) -> None:
        outcome = run_example(SPEC, route, dtype, "backward", example)
        assert outcome.row["verdict"] == "pass", outcome.report

    judged()


@pytest.mark.parametrize("route", ["min"], indirect=True)
def test_the_window_minimum_fails(route: ModuleImplementation) -> None:
    verdicts = []

    @settings(max_examples=40, database=None)
    @given(example=SPEC.examples())
    def judged(example: Example) -> None:
        verdicts.append(run_example(SPEC, route, "float64", "backward", example).row["verdict"])

    judged()
    assert "fail" in verdicts, verdicts
