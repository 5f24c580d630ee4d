"""Implementations under test: adapters exposing catalogue op names on NumPy arrays.

An implementation is any object whose attributes named like catalogue ops take and return
NumPy arrays with torch.nn.functional's signatures; ``<op>_backward(grad_output, *arrays,
**config)`` returns the gradients of the differentiable arrays. Optionally
``<op>_jvp(tangents, *arrays, **config)`` returns the forward-mode derivative of the first
output and ``<op>_double_backward(grad_output, grad_grads, *arrays, **config)`` the second
derivatives (conformance.judge.derivatives says what each means); an implementation without them
is simply not judged in those directions. It may declare
``accumulation_dtype(dtype) -> str`` (default: the dtype itself; with ``op`` and ``direction``
keyword parameters it is asked per op and direction), ``supports(op, dtype)``
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
from dataclasses import dataclass
from typing import Any

from conformance.implementations.base import (
    DIRECTION_SUFFIXES,
    OpsByName,
    Unsupported,
    accumulation_dtype,
    implements,
    supports,
    versions,
)

__all__ = [
    "BUILT_IN",
    "DIRECTION_SUFFIXES",
    "BuiltIn",
    "OpsByName",
    "Unsupported",
    "accumulation_dtype",
    "check_implementation",
    "implements",
    "installed",
    "load_implementation",
    "missing_packages",
    "supports",
    "versions",
]


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
    "tinygrad": BuiltIn(
        "tinygrad_tensor",
        "TinygradImplementation",
        ("tinygrad",),
        "tinygrad",
        "tinygrad's Tensor ops on its CPU device (C built with clang), its autograd",
    ),
    "openvino": BuiltIn(
        "openvino_ops",
        "OpenVinoImplementation",
        ("openvino",),
        "openvino",
        "one opset16 model per call, compiled by OpenVINO's CPU plugin (float32 in float32)",
    ),
    "tensorflow": BuiltIn(
        "tensorflow_nn",
        "TensorFlowImplementation",
        ("tensorflow",),
        "tensorflow",
        "tf.nn eager on the CPU (oneDNN on), GradientTape and ForwardAccumulator",
    ),
}


def missing_packages(name: str) -> list[str]:
    """The packages a built-in implementation needs that are not installed."""
    return [p for p in BUILT_IN[name].packages if importlib.util.find_spec(p) is None]


def installed() -> dict[str, bool]:
    """Each built-in implementation: whether what it needs is installed."""
    return {name: not missing_packages(name) for name in BUILT_IN}


def _require_packages(name: str) -> None:
    """A built-in implementation's missing packages as one error saying how to install them."""
    built_in = BUILT_IN[name]
    missing = missing_packages(name)
    if missing:
        extra = f"pip install 'convconformance[{built_in.extra}]'" if built_in.extra else ""
        install = extra or f"pip install {' '.join(missing)}"
        raise ValueError(
            f"implementation {name!r} needs {', '.join(missing)}, which is not installed: {install}"
        )


def _built_in(name: str, device: str | None) -> Any:
    built_in = BUILT_IN[name]
    _require_packages(name)
    module = importlib.import_module(f"{__name__}.{built_in.module}")
    factory = getattr(module, built_in.factory)
    if name == "torch":
        return factory(device=_device(device))
    return factory()


def _device(device: str | None) -> str:
    """The device 'torch' runs on: the one given, else $CONFORMANCE_DEVICE, else cpu."""
    return device or os.environ.get("CONFORMANCE_DEVICE") or "cpu"


def _parsed(spec: str, device: str | None) -> tuple[str, dict[str, str]]:
    """(built-in or module name, code-path options), a code path checked against this CPU
    (its environment, the caps, takes effect only in a process that sets it before importing
    torch: the isolation's helpers) and refused on another device."""
    from conformance.implementations import code_paths

    base, options = code_paths.parse(spec)
    if options:
        code_paths.environment(spec)  # a path this CPU cannot run is refused now
        if device not in (None, "cpu"):
            raise ValueError(f"implementation {spec!r}: code paths are CPU paths, not {device}")
    return base, options


# Built-ins whose construction checks nothing but that their packages import: torch's
# eager and compiled adapters on the CPU (on another device, torch says whether it has it).
_CHECKED_BY_PACKAGES = ("torch", "torch-channels_last", "torch-compile", "torch-decompositions")


def check_implementation(spec: str, device: str | None = None) -> None:
    """What ``load_implementation(spec, device)`` would refuse, as the same ValueError, with
    as little imported as that takes: a run's controller checks its options with it before
    its workers start, and importing torch there (3 s of CPU here) bought nothing its workers
    do not redo. Built-ins that check more than their imports (a device, a compiler) and
    users' modules are loaded as they will be."""
    base, options = _parsed(spec, device)
    if base in _CHECKED_BY_PACKAGES and (options or _device(device) == "cpu"):
        _require_packages(base)
        return
    load_implementation(spec, device)


def load_implementation(spec: str, device: str | None = None) -> Any:
    """A built-in name (see BUILT_IN), a code path of one ('torch[cpu:avx2]', see
    code_paths), or 'package.module[:attribute]' naming a module or object ('reference' too).
    ``device`` applies to 'torch' (default: $CONFORMANCE_DEVICE, else cpu).

    A code path's name is checked against this CPU here (_parsed)."""
    base, options = _parsed(spec, device)
    if options:
        loaded = _built_in(base, "cpu")
        loaded.name = spec
        return loaded
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
