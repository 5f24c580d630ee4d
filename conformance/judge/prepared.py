"""One example made ready to judge: its arrays as the implementation gets them (rounded to the
tested dtype), the same in float64 for the oracle, the oracle's answers by output name, the
call it makes, and the columns every row of it has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import input_scale, numpy_dtype
from conformance.catalogue.example import Example
from conformance.catalogue.spec import InDtype, OpSpec
from conformance.implementations.calls import Call
from conformance.judge.derivatives import (
    DERIVATIVE_DIRECTIONS,
    direction_arrays,
    implementation_attribute,
    output_names,
)

Arrays = dict[str, np.ndarray | None]


def as_tuple(result: Any) -> tuple[Any, ...]:
    """An op's result as a tuple of its outputs."""
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def with_copies(arrays: Mapping[str, np.ndarray | None], names: tuple[str, ...]) -> Arrays:
    """The arrays, with fresh copies of those an op updates in place."""
    return {k: a.copy() if a is not None and k in names else a for k, a in arrays.items()}


def _config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """Each config argument as its own column; tuples as strings so columns stay scalar."""
    return {
        k: v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in config.items()
    }


def describe(
    arrays: Mapping[str, np.ndarray | None],
    config: Mapping[str, Any],
    omitted: tuple[str, ...] = (),
) -> str:
    """One line for a person: the arrays' shapes, then the config (an argument the call
    leaves out at its default marked so)."""
    shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items() if a is not None)
    knobs = ", ".join(
        f"{k}={v!r}" + (" (left out: the default)" if k in omitted else "")
        for k, v in config.items()
    )
    return f"{shapes}; {knobs}" if knobs else shapes


def regions_hit(spec: OpSpec, example: Example, dtype: str = "float64") -> list[str]:
    """The op's coverage regions the example falls in, in the tested dtype (InDtype regions
    look at the inputs as rounded to it)."""
    return [
        name
        for name, hit in spec.coverage.items()
        if (hit(example, dtype) if isinstance(hit, InDtype) else hit(example))
    ]


@dataclass
class Prepared:
    """One example made ready: the arrays as the implementation gets them (``tested``,
    ``grad_output``, ``extra``: the tangents or grad_grads), the same in float64 for the
    oracle, and, once ``oracle`` ran, its answers by output name (``wanted``)."""

    spec: OpSpec
    dtype: str
    direction: str
    example: Example
    config: dict[str, Any]
    tested: Arrays
    oracle_in: Arrays
    extra: Arrays = field(default_factory=dict)
    extra64: Arrays = field(default_factory=dict)
    grad_output: np.ndarray | None = None
    grad64: np.ndarray | None = None
    names: tuple[str, ...] = ()
    wanted: Arrays = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()

    @property
    def attribute(self) -> str:
        return implementation_attribute(self.spec.name, self.direction)


def prepare(spec: OpSpec, dtype: str, direction: str, example: Example) -> Prepared:
    """The example's arrays rounded to the tested dtype (scaled first where the value kind is
    tested at a scale of its own), and their float64 copies."""
    stored = numpy_dtype(dtype)
    scale = input_scale(dtype, example.values)
    directions: Arrays = {}  # a derivative direction's tangents or grad_grads
    if direction in DERIVATIVE_DIRECTIONS:
        directions = direction_arrays(spec, example, direction)
    # one errstate for every array (2.3 us each): past the dtype's range is inf, as torch's
    # cast gives
    with np.errstate(over="ignore"):
        tested = {k: _rounded(a, scale, stored) for k, a in example.arrays.items()}
        extra = {k: _rounded(a, scale, stored) for k, a in directions.items()}
    prepared = Prepared(
        spec, dtype, direction, example, dict(example.config), tested, _in_float64(tested)
    )
    prepared.extra, prepared.extra64 = extra, _in_float64(extra)
    return prepared


def _in_float64(arrays: Arrays) -> Arrays:
    return {k: None if a is None else a.astype(np.float64) for k, a in arrays.items()}


def _rounded(array: np.ndarray | None, scale: float, stored: Any) -> np.ndarray | None:
    """``array`` times ``scale``, rounded to the tested dtype (one pass where scale is 1); the
    caller says what an overflow means."""
    if array is None:
        return None
    return (array if scale == 1 else array * scale).astype(stored)


def oracle(prepared: Prepared) -> None:
    """The reference's answers on the tested inputs, in float64 (may raise: an oracle error)."""
    spec, config, oracle_in = prepared.spec, prepared.config, prepared.oracle_in
    updated = with_copies(oracle_in, spec.mutated)
    direction = prepared.direction
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if direction == "jvp":
            forward: tuple[Any, ...] = ()  # no forward: the output's shape is the tangent's
        elif direction != "forward" and spec.output_shape is not None:
            # the forward's shape, without the forward: the gradients need no more of it
            forward = ()
            prepared.output_shape = tuple(spec.output_shape(*updated.values(), **config))
        else:
            forward = as_tuple(spec.reference(*updated.values(), **config))
            forward += tuple(updated[name] for name in spec.mutated)
            prepared.output_shape = tuple(forward[0].shape)
        if direction == "forward":
            prepared.names, expected = (*spec.outputs(config), *spec.mutated), forward
        elif direction == "jvp":
            assert spec.reference_jvp is not None
            tangents = tuple(prepared.extra64.values())
            # the copies no forward has updated: the jvp's own, its running statistics as given
            expected = (spec.reference_jvp(tangents, *updated.values(), **config),)
            prepared.names = output_names(spec, direction)
            prepared.output_shape = tuple(expected[0].shape)
        else:
            # the double backward multiplies grad_output by the grad_grads: scaled like the
            # arrays in float16 (FLOAT16_WIDE_SCALE), their products stay in range as the
            # forward's do
            scale = 1.0
            if direction == "double_backward":
                scale = input_scale(prepared.dtype, prepared.example.values)
            drawn = prepared.example.grad_output(prepared.output_shape) * scale
            prepared.grad_output = drawn.astype(numpy_dtype(prepared.dtype))
            grad64 = prepared.grad64 = prepared.grad_output.astype(np.float64)
            if direction == "backward":
                prepared.names = spec.gradient_names
                expected = as_tuple(spec.reference_backward(grad64, *oracle_in.values(), **config))
            else:
                assert spec.reference_double_backward is not None
                prepared.names = output_names(spec, direction)
                expected = as_tuple(
                    spec.reference_double_backward(
                        grad64, tuple(prepared.extra64.values()), *oracle_in.values(), **config
                    )
                )
    prepared.wanted = dict(zip(prepared.names, expected, strict=True))


def arguments(prepared: Prepared) -> tuple[tuple[Any, ...], Arrays]:
    """The implementation's positional arguments for the prepared example, and the copies of
    the arrays an op updates in place (handed to it)."""
    spec, direction = prepared.spec, prepared.direction
    handed = with_copies(prepared.tested, spec.mutated) if direction != "backward" else {}
    passed = passed_arrays(prepared)  # trailing arrays left out at their default: not passed
    if direction == "forward":
        return tuple(handed[name] for name in passed), handed
    if direction == "jvp":
        return (tuple(prepared.extra.values()), *(handed[name] for name in passed)), handed
    tested = tuple(prepared.tested[name] for name in passed)
    if direction == "backward":
        return (prepared.grad_output, *tested), handed
    extra = tuple(prepared.extra.values())
    return (prepared.grad_output, extra, *tested), handed


def passed_arrays(prepared: Prepared) -> tuple[str, ...]:
    """The array arguments the call passes: in a forward, all but the trailing ones the
    example leaves out at their default (a gradient direction passes them all: it returns
    one gradient per differentiable argument, None for an absent one)."""
    omitted = set(prepared.example.omitted) if prepared.direction == "forward" else set()
    return tuple(name for name in prepared.tested if name not in omitted)


def call_of(spec: OpSpec, dtype: str, direction: str, example: Example) -> Call:
    """The call an example makes on an implementation (for a history replayed in a repro)."""
    prepared = prepare(spec, dtype, direction, example)
    oracle(prepared)
    return Call(prepared.attribute, arguments(prepared)[0], prepared.example.call_config)


def _row(prepared: Prepared, implementation: Any, regions: list[str] | None) -> dict[str, Any]:
    """The columns every example's row has, whatever its verdict."""
    spec, example, dtype = prepared.spec, prepared.example, prepared.dtype
    return {
        "op": spec.name,
        "family": spec.family,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": prepared.direction,
        **_config_columns(prepared.config),
        **{f"{k}_shape": None if a is None else str(a.shape) for k, a in prepared.tested.items()},
        "output_shape": str(prepared.output_shape) if prepared.output_shape else None,
        "values": example.values,
        "seed": example.seed,
        "regions": ";".join(regions_hit(spec, example, dtype) if regions is None else regions),
        "example_key": example.key(),
        "example": describe(prepared.tested, prepared.config, prepared.example.omitted),
        "omitted": ";".join(prepared.example.omitted),
    }


def special_values(arrays: Mapping[str, np.ndarray | None], op: str = "") -> str:
    """What is special in an example's arrays, for a person reading its minimal example: the
    values themselves when there are few, else which of NaN, +inf, -inf, -0.0 are there (and
    ties, for max pooling, where equal values decide the index); '' when nothing is."""
    present = {k: np.asarray(a, dtype=np.float64) for k, a in arrays.items() if a is not None}
    total = sum(a.size for a in present.values())
    if 0 < total <= 12:
        return "; ".join(
            f"{k} = {[float(v) for v in a.ravel()]}" for k, a in present.items()
        ).replace("nan", "NaN")
    found = []
    values = np.concatenate([a.ravel() for a in present.values()]) if present else np.zeros(0)
    for word, hit in (
        ("NaN", np.isnan(values)),
        ("+inf", np.isposinf(values)),
        ("-inf", np.isneginf(values)),
        ("-0.0", (values == 0) & np.signbit(values)),
    ):
        if hit.any():
            found.append(f"{int(hit.sum())} {word}")
    x = present.get("input")
    if "max_pool" in op and x is not None and x.size != np.unique(x).size:
        found.append("ties")
    return ("input holds " + ", ".join(found)) if found else ""
