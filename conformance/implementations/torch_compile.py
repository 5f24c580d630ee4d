"""torch.compile: the eager adapter's torch.nn.functional calls, compiled by dynamo.

``torch-compile`` compiles with inductor (C++ generated for the CPU and built with gcc;
convolution stays an extern call to aten's kernel), ``torch-decompositions`` with
``aot_eager_decomp_partition`` (torch/_dynamo/backends/debugging.py): AOT autograd with
inductor's decomposition table (``select_decomp_table``) and its partitioner, then the
decomposed graph run eagerly. A discrepancy in both is a decomposition's; one in
torch-compile alone is inductor's lowering or code generation.

Every call is compiled, never run eagerly behind our back: ``fullgraph=True`` (a graph break
raises), ``suppress_errors`` off (a compiler error raises), and the recompile limits raised
with ``fail_on_recompile_limit_hit`` on (dynamo would otherwise silently run the frame
eagerly once a code object has ``recompile_limit`` = 8 entries). Forward runs under
``no_grad`` (an inference graph); backward calls the compiled function on tensors that
require grad and backpropagates eagerly through it, which runs AOT autograd's compiled
backward graph.

Each (op, direction, dtype, config, which optional arrays are absent) gets its own compiled
callable, with a code object of its own, so dynamo's per-code cache holds only that key's
shape specializations. ``CONFORMANCE_COMPILE_DYNAMIC=1`` compiles with ``dynamic=True``
(one graph for every input size of a key); the default, static shapes, compiles 3-8 times
faster a graph (no sympy over symbolic sizes) and a campaign draws a new config for nearly
every example, so sizes seldom repeat within a key. ``CONFORMANCE_COMPILE_LOG=PATH``
appends one JSON line per call (op, direction, dtype, whether the key was new, graphs
compiled, seconds).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conformance.catalogue.dtypes import HALF_DTYPES
from conformance.implementations.torch_eager import TorchImplementation

# dynamo's limits per code object and per process (torch/_dynamo/config.py, 2.13:
# recompile_limit = 8, accumulated_recompile_limit = 256; cache_size_limit is an alias)
RECOMPILE_LIMIT = 1_000_000
# compiled callables kept before torch._dynamo.reset() frees them (each holds a loaded .so
# or an FX graph; a quick campaign makes ~1500)
RESET_AFTER = 2000

_fresh_names = itertools.count()


def _own_code(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with a code object of its own: dynamo caches compiled frames on the code
    object, so closures of one ``def`` would otherwise share (and exhaust) one cache."""
    code = function.__code__.replace(co_name=f"{function.__name__}_{next(_fresh_names)}")
    return types.FunctionType(
        code, function.__globals__, code.co_name, function.__defaults__, function.__closure__
    )


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a config value (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class CompiledImplementation(TorchImplementation):
    """torch.compile(backend="inductor", fullgraph=True) on the CPU."""

    # forward-mode AD and double backward are not compiled here: eager results under this
    # adapter's name would say nothing about the compiler
    derivatives = False

    name = "torch-compile"
    backend = "inductor"
    # inductor compiles each new configuration (2-16 s): five value draws judged per compile
    values_per_configuration = 5

    def __init__(self, dynamic: bool | None = None) -> None:
        super().__init__(device="cpu")
        import torch._dynamo
        import torch._inductor.config

        dynamo = torch._dynamo.config
        dynamo.recompile_limit = RECOMPILE_LIMIT
        dynamo.accumulated_recompile_limit = RECOMPILE_LIMIT
        dynamo.fail_on_recompile_limit_hit = True  # never a silent eager fallback
        dynamo.suppress_errors = False
        # compile in this process: the campaign owns one core, and a worker pool would
        # only add processes (the generated code is the same)
        torch._inductor.config.compile_threads = 1
        if dynamic is None:
            dynamic = os.environ.get("CONFORMANCE_COMPILE_DYNAMIC", "0") == "1"
        self.dynamic = dynamic
        self._eager_ops = dict(self._ops)
        self._ops = {op: self._compiling(op) for op in self._eager_ops}
        self._compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._log_path = os.environ.get("CONFORMANCE_COMPILE_LOG")
        self.statistics = {"keys": 0, "graphs": 0, "resets": 0}
        self._call_key: tuple[Any, ...] | None = None
        self._call_new_key = False

    def accumulation_dtype(self, dtype: str) -> str:
        """float16/bfloat16 accumulate in float32. Inductor computes every low-precision value
        in float32 (DTYPE_TO_COMPUTATION_DTYPE in torch/_inductor/codegen/common.py; the C++
        reductions accumulate in it, reduction_acc_type in codegen/cpp.py; avg pooling sums in
        the promoted compute dtype, _avg_poolnd in lowering.py); convolution is an extern
        call to aten.convolution (torch/_inductor/kernel/conv.py), eager's float32-opmath
        kernel."""
        return "float32" if dtype in HALF_DTYPES else dtype

    def versions(self) -> dict[str, str]:
        return {"torch": str(self._torch.__version__), "backend": self.backend}

    def _compiling(self, op: str) -> Callable[..., Any]:
        """What the eager adapter's _forward/_backward call for ``op``: the compiled callable
        of this call's key (direction: whether autograd records, as in _backward)."""

        def call(*tensors: Any, **config: Any) -> Any:
            torch = self._torch
            records = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in tensors
            )
            dtype = next(t.dtype for t in tensors if t is not None)
            key = (
                op,
                "backward" if records else "forward",
                str(dtype),
                tuple(sorted((k, _frozen(v)) for k, v in config.items())),
                tuple(t is None for t in tensors),
                self._module_shape(op, tensors, config),
            )
            compiled = self._compiled.get(key)
            new_key = compiled is None
            if compiled is None:
                compiled = self._compile(op, tensors, config)
                self._compiled[key] = compiled
            self._call_key, self._call_new_key = key, new_key
            return compiled(*tensors)

        return call

    @staticmethod
    def _module_shape(op: str, tensors: Sequence[Any], config: Mapping[str, Any]) -> Any:
        """The weight's shape and dtype where an nn.ConvNd is built for the call."""
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            return (tuple(tensors[1].shape), str(tensors[1].dtype))
        return None

    def _compile(self, op: str, tensors: Sequence[Any], config: Mapping[str, Any]) -> Any:
        torch = self._torch
        if len(self._compiled) >= RESET_AFTER:
            self._compiled.clear()
            torch._dynamo.reset()
            self.statistics["resets"] += 1
        function = self._eager_ops[op]
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            function = self._padded_conv(op, tensors[1], tensors[2] is not None, config)
        arguments = dict(config)

        def call(*tensors: Any) -> Any:
            return function(*tensors, **arguments)

        return torch.compile(
            _own_code(call), backend=self.backend, fullgraph=True, dynamic=self.dynamic
        )

    def _padded_conv(
        self, op: str, weight: Any, has_bias: bool, config: Mapping[str, Any]
    ) -> Callable[..., Any]:
        """nn.ConvNd's forward (F.pad in the mode, then F.convNd), the module built outside
        the compiled region (dynamo refuses nn.Parameter's constructor inside it)."""
        torch = self._torch
        module = getattr(torch.nn, f"Conv{op[-2]}d")(
            weight.shape[1] * config["groups"],
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=config["stride"],
            padding=config["padding"],
            dilation=config["dilation"],
            groups=config["groups"],
            bias=has_bias,
            padding_mode=config["padding_mode"],
            dtype=weight.dtype,
            device="meta",
        )

        def conv(input: Any, weight: Any, bias: Any = None, **_: Any) -> Any:
            parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
            return torch.func.functional_call(module, parameters, (input,))

        return conv

    def _forward(self, op: str, arrays: Sequence[Any], config: dict) -> Any:
        return self._timed(lambda: super(CompiledImplementation, self)._forward(op, arrays, config))

    def _backward(
        self, op: str, grad_output: Any, arrays: Sequence[Any], config: dict
    ) -> tuple[Any, ...]:
        """Timed with the eager backward pass, during which AOT autograd compiles the
        backward graph on its first use."""
        return self._timed(
            lambda: super(CompiledImplementation, self)._backward(op, grad_output, arrays, config)
        )

    def _timed(self, run: Callable[[], Any]) -> Any:
        """``run()``, counting the dynamo graphs it compiled and logging its seconds."""
        counters = self._torch._dynamo.utils.counters["stats"]
        graphs = counters["unique_graphs"]
        self._call_key = None
        started = time.perf_counter()
        result = run()
        if self._call_key is not None:
            seconds = time.perf_counter() - started
            self._record(
                self._call_key, self._call_new_key, counters["unique_graphs"] - graphs, seconds
            )
        return result

    def _record(self, key: tuple[Any, ...], new_key: bool, graphs: int, seconds: float) -> None:
        self.statistics["keys"] += new_key
        self.statistics["graphs"] += graphs
        if not self._log_path:
            return
        op, direction, dtype = key[:3]
        entry = {
            "op": op,
            "direction": direction,
            "dtype": dtype.removeprefix("torch."),
            "new_key": new_key,
            "graphs": graphs,
            "seconds": round(seconds, 4),
            "backend": self.backend,
            "dynamic": self.dynamic,
        }
        with open(self._log_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry) + "\n")

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool | str,
        dtype: str = "float64",
    ) -> list[str]:
        """The eager adapter's lines, with the call compiled as this adapter compiles it:
        torch.compile(lambda <arrays>: <call>, backend=..., fullgraph=True, dynamic=...),
        forward under no_grad."""
        lines = super().repro_lines(op, config, array_names, output_names, backward, dtype)
        at = next(i for i, line in enumerate(lines) if line.startswith("out = "))
        call = lines[at].removeprefix("out = ")
        prelude: list[str] = []
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            # the module is built outside the compiled region, as the adapter does
            module_call = call.removeprefix("torch.func.functional_call(")
            module, _, rest = module_call.partition(", {k: v")
            prelude = [f"module = {module}.to('meta')"]
            call = f"torch.func.functional_call(module, {{k: v{rest}"
        compiled = (
            f"compiled = torch.compile(lambda {', '.join(array_names)}: {call}, "
            f"backend={self.backend!r}, fullgraph=True, dynamic={self.dynamic})"
        )
        arguments = ", ".join(array_names)
        if backward:
            run = [f"out = compiled({arguments})"]
        else:
            run = ["with torch.no_grad():", f"    out = compiled({arguments})"]
        return [*lines[:at], *prelude, compiled, *run, *lines[at + 1 :]]


class DecompositionsImplementation(CompiledImplementation):
    """torch.compile with aot_eager_decomp_partition: inductor's decompositions, no code
    generation (torch/_dynamo/backends/debugging.py)."""

    name = "torch-decompositions"
    backend = "aot_eager_decomp_partition"
    values_per_configuration = 2  # 0.3-0.5 s per configuration: more configurations instead

    def accumulation_dtype(self, dtype: str) -> str:
        """The decomposed graph runs aten's eager kernels, which accumulate float16/bfloat16
        in float32 (opmath); a decomposition that computes in the low-precision dtype itself
        shows up as "widened"."""
        return "float32" if dtype in HALF_DTYPES else dtype
