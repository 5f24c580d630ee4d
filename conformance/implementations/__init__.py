"""Implementations under test: adapters exposing catalogue op names on NumPy arrays.

An implementation is any object whose attributes named like catalogue ops take and return
NumPy arrays with torch.nn.functional's signatures; ``<op>_backward(grad_output, *arrays,
**config)`` returns the gradients of the differentiable arrays. It may declare
``accumulation_dtype(dtype) -> str`` (default: the dtype itself), ``supports(op, dtype)``
(whole groups it does not run) and ``repro_lines(...)`` (the lines of a repro snippet that
compute ``got``). ``reference`` itself is one.

An implementation whose framework has argument rules of its own (ONNX, JAX) sets
``validates_like_torch = False``: an invalid call (by torch's rules) that it accepts is then
counted unsupported, not failed; one it rejects while the reference accepts still fails.

Where an implementation cannot express one example (a padding mode its framework lacks,
``return_indices``, a ``ceil_mode`` its operator set refuses), it raises ``Unsupported``
with the reason: the example is recorded as *unsupported*, never as a pass or a failure.

The built-in adapters live one module each in this package, all of the same shape: a class
with ``name``, ``has``, ``supports``, ``accumulation_dtype``, the ops, and ``repro_lines``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class Unsupported(Exception):
    """Raised by an adapter for an example its framework cannot express; the message is the
    reason the report shows."""


class OpsByName:
    """What the adapters with a backward share: ``self._ops`` maps each catalogue op they run
    to a callable; ``impl.<op>`` calls ``self._forward`` and ``impl.<op>_backward``
    ``self._backward``, both defined by the adapter."""

    _ops: dict[str, Callable[..., Any]]

    def has(self, op: str) -> bool:
        return op.removesuffix("_backward") in self._ops

    def _forward(self, op: str, arrays: Sequence[Any], config: dict) -> Any:
        raise NotImplementedError

    def _backward(
        self, op: str, grad_output: Any, arrays: Sequence[Any], config: dict
    ) -> tuple[Any, ...]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Callable[..., Any]:
        ops = self.__dict__.get("_ops", {})
        if name in ops:
            return lambda *arrays, **config: self._forward(name, arrays, config)
        if name.endswith("_backward") and name.removesuffix("_backward") in ops:
            op = name.removesuffix("_backward")
            return lambda grad_output, *arrays, **config: self._backward(
                op, grad_output, arrays, config
            )
        raise AttributeError(name)


@dataclass(frozen=True)
class BuiltIn:
    """A built-in implementation: where its adapter lives and what it needs installed."""

    module: str
    factory: str
    packages: tuple[str, ...]  # importable names the adapter needs
    extra: str | None  # pip extra of convconformance that installs them
    summary: str


BUILT_IN: dict[str, BuiltIn] = {
    "torch": BuiltIn(
        "torch_eager", "TorchImplementation", ("torch",), None, "torch eager (CPU, or --device)"
    ),
    "torch-channels_last": BuiltIn(
        "torch_eager",
        "ChannelsLastImplementation",
        ("torch",),
        None,
        "torch eager, 4-d and 5-d arrays in channels-last memory format",
    ),
    "torch-compile": BuiltIn(
        "torch_compile",
        "CompiledImplementation",
        ("torch",),
        None,
        "torch.compile, inductor backend (C++ code generated and built with gcc)",
    ),
    "torch-decompositions": BuiltIn(
        "torch_compile",
        "DecompositionsImplementation",
        ("torch",),
        None,
        "torch.compile, aot_eager with inductor's decompositions (no code generation)",
    ),
    "onnxruntime": BuiltIn(
        "onnx_runtime",
        "OnnxRuntimeImplementation",
        ("onnx", "onnxruntime"),
        "onnx",
        "one ONNX graph per call, run by onnxruntime's CPU execution provider",
    ),
    "onnx-reference": BuiltIn(
        "onnx_runtime",
        "OnnxReferenceImplementation",
        ("onnx",),
        "onnx",
        "the same ONNX graphs, run by onnx.reference.ReferenceEvaluator",
    ),
    "jax": BuiltIn(
        "jax_lax", "JaxImplementation", ("jax",), "jax", "jax.lax on the CPU, float64 enabled"
    ),
}


def missing_packages(name: str) -> list[str]:
    """The packages a built-in implementation needs that are not installed."""
    return [p for p in BUILT_IN[name].packages if importlib.util.find_spec(p) is None]


def installed() -> dict[str, bool]:
    """Each built-in implementation: whether what it needs is installed."""
    return {name: not missing_packages(name) for name in BUILT_IN}


def _built_in(name: str, device: str | None) -> Any:
    built_in = BUILT_IN[name]
    missing = missing_packages(name)
    if missing:
        extra = f"pip install 'convconformance[{built_in.extra}]'" if built_in.extra else ""
        install = extra or f"pip install {' '.join(missing)}"
        raise ValueError(
            f"implementation {name!r} needs {', '.join(missing)}, which is not installed: {install}"
        )
    module = importlib.import_module(f"{__name__}.{built_in.module}")
    factory = getattr(module, built_in.factory)
    if name == "torch":
        return factory(device=device or os.environ.get("CONFORMANCE_DEVICE") or "cpu")
    return factory()


def load_implementation(spec: str, device: str | None = None) -> Any:
    """A built-in name (see BUILT_IN), or 'package.module[:attribute]' naming a module or
    object ('reference' too). ``device`` applies to 'torch' (default: $CONFORMANCE_DEVICE,
    else cpu)."""
    if spec in BUILT_IN:
        return _built_in(spec, device)
    from conformance.implementations.user_module import ModuleImplementation

    module_name, _, attribute = spec.partition(":")
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"implementation {spec!r}: cannot import {module_name!r}: {error}"
        ) from None
    if attribute:
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ValueError(
                f"implementation {spec!r}: {module_name} has no {attribute!r}"
            ) from None
    return ModuleImplementation(spec, target)


def implements(implementation: Any, op: str) -> bool:
    has = getattr(implementation, "has", None)
    return bool(has(op)) if callable(has) else hasattr(implementation, op)


def supports(implementation: Any, op: str, dtype: str) -> bool:
    """Whether the implementation runs ``op`` in ``dtype`` at all (default: yes)."""
    declared = getattr(implementation, "supports", None)
    return bool(declared(op, dtype)) if callable(declared) else True


def accumulation_dtype(implementation: Any, dtype: str) -> str:
    declared = getattr(implementation, "accumulation_dtype", None)
    return str(declared(dtype)) if callable(declared) else dtype


def versions(implementation: Any) -> dict[str, str]:
    """The framework versions an implementation runs on (for the header and the baseline)."""
    declared = getattr(implementation, "versions", None)
    return dict(declared()) if callable(declared) else {}
