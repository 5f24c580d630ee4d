"""An OpenVINO model that writes itself down as it is built: every opset call the openvino
adapter makes is also recorded as a line of Python, so that a repro snippet rebuilds the
very model the adapter compiled (the lines are the model's identity in the compile cache,
too).

``Graph.node("convolution", x, w, strides=[1], ...)`` calls ``openvino.opset16.convolution``
and records ``n1 = ops.convolution(p_input, p_weight, strides=[1], ...)``. Arguments are
recorded values, plain Python values, or small NumPy arrays (OpenVINO makes a Constant of
an array argument; the snippet writes it as a literal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPSET = "opset16"  # the newest opset module openvino 2026.4 ships
# OpenVINO element types by the suite's dtype names (OpenVINO's short names)
ELEMENT_TYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}


@dataclass(frozen=True)
class Value:
    """One recorded value: how the snippet names its node, the live node, and which of its
    outputs (None: the node itself, which OpenVINO reads as its first output)."""

    name: str
    node: Any
    port: int | None = None

    @property
    def source(self) -> str:
        return self.name if self.port is None else f"{self.name}.output({self.port})"

    @property
    def handle(self) -> Any:
        return self.node if self.port is None else self.node.output(self.port)

    def as_output(self) -> tuple[str, Any]:
        """(source, live) of this value as an Output, what a model's result list takes."""
        port = self.port or 0
        return f"{self.name}.output({port})", self.node.output(port)


@dataclass(frozen=True)
class Result:
    """A model output: the suite's output name and whether it is an index (int64)."""

    name: str
    value: Value
    index: bool = False


def literal(value: Any) -> str:
    """Python source for an argument: a recorded value, an array, or a plain value."""
    if isinstance(value, Value):
        return value.source
    if isinstance(value, np.ndarray):
        return f"np.array({value.tolist()!r}, dtype=np.{value.dtype})"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(literal(v) for v in value)}]"
    return repr(value)


@dataclass
class Graph:
    """A model under construction: its parameters, nodes, results and their source."""

    ops: Any  # the openvino.opset16 module
    element_types: Any  # openvino.Type
    dtype: str  # the suite's name of the model's floating type
    lines: list[str] = field(default_factory=list)
    parameters: list[tuple[str, Value]] = field(default_factory=list)  # (array name, value)
    results: list[Result] = field(default_factory=list)

    def parameter(self, name: str, shape: Sequence[int]) -> Value:
        """A model input fed from the call's array ``name`` (its shape, the graph's dtype)."""
        short = ELEMENT_TYPES[self.dtype]
        element_type = getattr(self.element_types, short)
        handle = self.ops.parameter(list(shape), element_type, name=name)
        value = Value(f"p_{name}", handle)
        self.lines.append(
            f"{value.source} = ops.parameter({list(shape)!r}, ov.Type.{short}, name={name!r})"
        )
        self.parameters.append((name, value))
        return value

    def node(self, function: str, *args: Any, **kwargs: Any) -> Value:
        """``ops.<function>(*args, **kwargs)``, recorded; its first output."""
        handle = getattr(self.ops, function)(
            *(self._live(a) for a in args), **{k: self._live(v) for k, v in kwargs.items()}
        )
        source = f"n{len(self.lines) + 1}"
        written = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
        self.lines.append(f"{source} = ops.{function}({', '.join(written)})")
        return Value(source, handle)

    def output(self, value: Value, index: int) -> Value:
        """Output ``index`` of a node with several (MaxPool's values and indices)."""
        return Value(value.name, value.node, index)

    def result(self, name: str, value: Value, index: bool = False) -> None:
        self.results.append(Result(name, value, index))

    @staticmethod
    def _live(value: Any) -> Any:
        if isinstance(value, Value):
            return value.handle
        if isinstance(value, list):
            return [v.handle if isinstance(v, Value) else v for v in value]
        return value

    def source(self) -> str:
        """The model's source: its identity in the compile cache."""
        outputs = ", ".join(r.value.as_output()[0] for r in self.results)
        return "\n".join([*self.lines, f"outputs = [{outputs}]"])
