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
backward graph. jvp compiles the whole forward-mode computation (dual tensors made, the op
called, the tangent unpacked, in one graph); double backward is unsupported (AOT autograd
refuses it), example by example, with that reason.

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

    # jvp: the whole forward-mode computation compiled (dual tensors made and unpacked inside
    # the graph). Double backward: torch.compile's AOT autograd refuses it ("torch.compile with
    # aot_autograd does not currently support double backward", torch 2.13), and eager results
    # under this adapter's name would say nothing about the compiler: unsupported, with that
    # reason, example by example
    derivatives = True

    name = "torch-compile"
    backend = "inductor"
    # inductor compiles each new configuration (1.2-3.3 s mean per op and direction, more on a
    # loaded machine): five value draws judged per compile, one configuration per Hypothesis
    # test case of five, so a group's distinct configurations are exactly a fifth of its
    # examples. Four did worse than it looks: a case of five then holds two configurations
    # (four draws and one), 2.7 examples per compile (bench, 2 workers, 60 per group: 106
    # examples/min at four, 171 at five)
    values_per_configuration = 5
    # a call that compiles waits for gcc (2-16 s, a minute on a loaded machine): a hang is
    # a call past five minutes, not past the 5 s of an eager call
    call_time_limit = 300.0

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
            key = self._key(op, "backward" if records else "forward", tensors, config)
            return self._cached(key, lambda: self._compile(op, tensors, config))(*tensors)

        return call

    def _key(
        self, op: str, direction: str, tensors: Sequence[Any], config: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        """A compiled callable's key: op, direction, dtype, config, absent arrays, and the
        weight's shape where a padded conv builds its module."""
        return (
            op,
            direction,
            str(next(t.dtype for t in tensors if t is not None)),
            tuple(sorted((k, _frozen(v)) for k, v in config.items())),
            tuple(t is None for t in tensors),
            self._module_shape(op, tensors, config),
        )

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The compiled callable of ``key``, built on first use (after a reset of dynamo's
        caches every RESET_AFTER callables); the call's key noted for _timed."""
        compiled = self._compiled.get(key)
        new_key = compiled is None
        if compiled is None:
            if len(self._compiled) >= RESET_AFTER:
                self._compiled.clear()
                self._torch._dynamo.reset()
                self.statistics["resets"] += 1
            compiled = build()
            self._compiled[key] = compiled
        self._call_key, self._call_new_key = key, new_key
        return compiled

    @staticmethod
    def _module_shape(op: str, tensors: Sequence[Any], config: Mapping[str, Any]) -> Any:
        """The weight's shape and dtype where an nn.ConvNd is built for the call."""
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            return (tuple(tensors[1].shape), str(tensors[1].dtype))
        return None

    def _compile(self, op: str, tensors: Sequence[Any], config: Mapping[str, Any]) -> Any:
        function = self._eager_function(op, tensors, config)
        arguments = dict(config)

        def call(*tensors: Any) -> Any:
            return function(*tensors, **arguments)

        return self._torch_compile(call)

    def _eager_function(
        self, op: str, tensors: Sequence[Any], config: Mapping[str, Any]
    ) -> Callable[..., Any]:
        """What a compiled callable runs: the eager op, or nn.ConvNd's forward for a padded
        conv (a call may leave its bias out)."""
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            has_bias = len(tensors) > 2 and tensors[2] is not None
            return self._padded_conv(op, tensors[1], has_bias, config)
        return self._eager_ops[op]

    def _torch_compile(self, call: Callable[..., Any]) -> Any:
        """torch.compile as this adapter compiles everything: its own code object,
        fullgraph, this adapter's backend and dynamic setting."""
        return self._torch.compile(
            _own_code(call), backend=self.backend, fullgraph=True, dynamic=self.dynamic
        )

    def _padded_conv(
        self, op: str, weight: Any, has_bias: bool, config: Mapping[str, Any]
    ) -> Callable[..., Any]:
        """nn.ConvNd's forward (F.pad in the mode, then F.convNd), the module built outside
        the compiled region (dynamo refuses nn.Parameter's constructor inside it)."""
        torch = self._torch
        groups = config.get("groups", 1)  # a call may leave any of them at its default
        module = getattr(torch.nn, f"Conv{op[-2]}d")(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=config.get("stride", 1),
            padding=config.get("padding", 0),
            dilation=config.get("dilation", 1),
            groups=groups,
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

    def _jvp(
        self,
        op: str,
        tangents: Sequence[Any],
        arrays: Sequence[Any],
        config: dict,
    ) -> Any:
        """One compiled function per key takes the arrays and the given tangents, makes the
        dual tensors, calls the op and returns the tangent of its first output."""
        return self._timed(lambda: self._compiled_jvp(op, tangents, arrays, config))

    def _compiled_jvp(
        self, op: str, tangents: Sequence[Any], arrays: Sequence[Any], config: dict
    ) -> Any:
        torch = self._torch
        arguments = {k: v for k, v in config.items() if k != "return_indices"}
        wanted = self._differentiable.get(op, (True,) * len(arrays))
        tensors = [self._tensor(a, op=op) for a in arrays]
        tangent_of = iter(tangents)
        dual_at: list[int] = []
        given: list[Any] = []
        for index, (tensor, differentiable) in enumerate(zip(tensors, wanted, strict=False)):
            tangent = next(tangent_of) if differentiable else None
            if tensor is not None and tangent is not None:
                dual_at.append(index)
                given.append(self._tensor(tangent, op=op))
        key = (*self._key(op, "jvp", tensors, arguments), tuple(dual_at))
        compiled = self._cached(
            key, lambda: self._compile_jvp(op, tensors, arguments, tuple(dual_at))
        )
        try:
            tangent_out = compiled(*tensors, *given)
        except torch._dynamo.exc.Unsupported as error:  # dynamo cannot trace it: say so
            from conformance.implementations import Unsupported

            raise Unsupported(f"torch.compile cannot trace this jvp: {error}") from error
        return self._array(tangent_out)

    def _compile_jvp(
        self, op: str, tensors: Sequence[Any], config: Mapping[str, Any], dual_at: tuple[int, ...]
    ) -> Any:
        torch = self._torch
        function = self._eager_function(op, tensors, config)
        count = len(tensors)
        arguments = dict(config)

        def call(*flat: Any) -> Any:
            forward_ad = torch.autograd.forward_ad
            with forward_ad.dual_level():
                inputs = list(flat[:count])
                for at, tangent in zip(dual_at, flat[count:], strict=True):
                    inputs[at] = forward_ad.make_dual(inputs[at], tangent)
                out = function(*inputs, **arguments)
                first = out[0] if isinstance(out, tuple) else out
                tangent_out = forward_ad.unpack_dual(first).tangent
                return torch.zeros_like(first) if tangent_out is None else tangent_out

        return self._torch_compile(call)

    def _double_backward(
        self,
        op: str,
        grad_output: Any,
        grad_grads: Sequence[Any],
        arrays: Sequence[Any],
        config: dict,
    ) -> tuple[Any, ...]:
        from conformance.implementations import Unsupported

        raise Unsupported(
            "torch.compile does not differentiate twice: AOT autograd raises 'torch.compile "
            "with aot_autograd does not currently support double backward' (torch 2.13)"
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
        if backward == "jvp":
            return self._jvp_repro_lines(lines, array_names, output_names)
        at = next(i for i, line in enumerate(lines) if line.startswith("out = "))
        prelude, call = _module_outside(lines[at].removeprefix("out = "))
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

    def _jvp_repro_lines(
        self, lines: list[str], array_names: Sequence[str], output_names: Sequence[str]
    ) -> list[str]:
        """The eager jvp lines (dual tensors made, the op called, the tangent unpacked) moved
        into one function compiled as the adapter compiles it, tangents passed in a list."""
        import re

        start = lines.index("fwAD.enter_dual_level()")
        at = next(i for i, line in enumerate(lines) if line.startswith("out = "))
        duals = [
            re.sub(r"tangents\[(\d+)\]", r"tangent_list[\1]",
                   re.sub(r"as_tensor\(tangents\[(\d+)\]\)", r"tangent_list[\1]", line))
            for line in lines[start + 1 : at]
            if "fwAD.make_dual(" in line
        ]  # fmt: skip
        plain = [line for line in lines[start + 1 : at] if "fwAD.make_dual(" not in line]
        prelude, call = _module_outside(lines[at].removeprefix("out = "))
        names = ", ".join(array_names)
        body = [
            *duals,
            f"out = {call}",
            "first = out[0] if isinstance(out, tuple) else out",
            "tangent = fwAD.unpack_dual(first).tangent",
            "return torch.zeros_like(first) if tangent is None else tangent",
        ]
        return [
            *lines[:start],
            *plain,
            *prelude,
            f"def jvp_of({names}, tangent_list):",
            "    with fwAD.dual_level():",
            *(f"        {line}" for line in body),
            f"compiled = torch.compile(jvp_of, backend={self.backend!r}, fullgraph=True, "
            f"dynamic={self.dynamic})",
            "given = [None if t is None else as_tensor(t) for t in tangents]",
            f"got = {{{output_names[0]!r}: as_numpy(compiled({names}, given))}}",
        ]


def _module_outside(call: str) -> tuple[list[str], str]:
    """A padded convolution's nn.ConvNd built before the compiled region, as the adapter
    builds it (dynamo refuses nn.Parameter's constructor inside): (its line, the call)."""
    if not call.startswith("torch.func.functional_call(torch.nn.Conv"):
        return [], call
    module_call = call.removeprefix("torch.func.functional_call(")
    module, _, rest = module_call.partition(", {k: v")
    return [f"module = {module}.to('meta')"], f"torch.func.functional_call(module, {{k: v{rest}"


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
