"""What a catalogue entry is: one op, declaratively (PyTorch's OpInfo is the model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from conformance.catalogue.dtypes import DTYPES
from conformance.catalogue.example import Example
from conformance.judge.error_model import Tolerance

Terms = Callable[[Example, tuple[int, ...]], dict[str, int]]
Region = Callable[[Example], bool]


@dataclass(frozen=True)
class ToleranceContext:
    """Everything a custom error model may use for one example."""

    op: str
    example: Example
    direction: str
    inputs: Mapping[str, np.ndarray | None]  # float64, as the oracle saw them
    grad_output: np.ndarray | None  # float64, backward and double backward only
    expected: Mapping[str, np.ndarray | None]  # the oracle's outputs by name
    accumulation_dtype: str
    dtype: str
    output_shape: tuple[int, ...]  # the forward output's, which term counts are stated in
    # float64, by differentiable argument: the tangents of a jvp, the grad_grads (cotangents
    # of the first gradients) of a double backward; empty otherwise
    tangents: Mapping[str, np.ndarray | None] = field(default_factory=dict)


CustomTolerances = Callable[[ToleranceContext], dict[str, Tolerance]]


def single_output(config: Mapping[str, Any]) -> tuple[str, ...]:
    return ("output",)


@dataclass(frozen=True)
class OpSpec:
    """One op: its oracle, its valid examples, how to judge each output, what to cover.

    Outputs not in ``exact`` are sums of products unless ``tolerances`` says otherwise: their
    bound needs the number of summed terms (``terms``) and the op re-run with the arguments in
    ``linear_args`` (default: every array) replaced by their absolute values.
    """

    name: str
    family: str
    reference: Callable[..., Any]
    reference_backward: Callable[..., tuple[np.ndarray | None, ...]]
    array_args: tuple[str, ...]
    differentiable: tuple[str, ...]
    examples: Callable[[], st.SearchStrategy[Example]]
    terms: Terms
    coverage: Mapping[str, Region]
    dtypes: tuple[str, ...] = DTYPES
    exact: frozenset[str] = frozenset()
    linear_args: tuple[str, ...] | None = None
    outputs: Callable[[Mapping[str, Any]], tuple[str, ...]] = single_output
    tolerances: CustomTolerances | None = field(default=None)
    # arrays the op updates in place (batch_norm's running statistics): their values after
    # the forward call are outputs too, compared like the others
    mutated: tuple[str, ...] = ()
    directions: tuple[str, ...] = ("forward", "backward")
    # forward-mode and second derivatives (reference.jvp, reference.double_backward), with
    # their error model; set for every differentiable op by conformance.judge.derivatives
    reference_jvp: Callable[..., np.ndarray] | None = None
    reference_double_backward: Callable[..., tuple[np.ndarray | None, ...]] | None = None
    derivative_tolerances: CustomTolerances | None = field(default=None)
    # the forward output's shape from the op's arguments (checked as the forward checks
    # them), where it costs less than the forward: the oracle of a backward then skips the
    # forward (ops that update arrays in place need the forward, and leave it None)
    output_shape: Callable[..., tuple[int, ...]] | None = None

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return tuple(f"grad_{name}" for name in self.differentiable)


def per_dim(value: Any, dims: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def spatial_dims(example: Example, array: str, leading: int) -> int:
    """Spatial rank of an example from one array with ``leading`` non-spatial batched axes."""
    x = example.arrays[array]
    assert x is not None
    return x.ndim - leading


def input_array(example: Example) -> np.ndarray:
    x = example.arrays["input"]
    assert x is not None
    return x


class InDtype:
    """A coverage region that depends on the tested dtype, ``hit(example, dtype)``: one that
    rounding the inputs to it can make (a window whose values cancel exactly only once
    rounded to bfloat16). Without a dtype, the example's own float64 values."""

    def __init__(self, hit: Callable[[Example, str], bool]) -> None:
        self.hit = hit

    def __call__(self, example: Example, dtype: str = "float64") -> bool:
        return self.hit(example, dtype)
