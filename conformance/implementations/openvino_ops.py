"""OpenVINO 2026.4 on its CPU plugin: each catalogue call is a small model of opset16 nodes
(openvino_builders, openvino_pool_builders), compiled on "CPU" and run once.

Forward only: OpenVINO is an inference engine (no autograd, so no ``<op>_backward``).
Compiled models are cached per model (its recorded source fixes the op, the shapes, the
config and the dtype) and per compile configuration: compiling costs milliseconds, a call
a fraction of one.

Precision. The CPU plugin's INFERENCE_PRECISION_HINT decides the arithmetic, whatever the
model's element types: its default is bf16 on a CPU with bf16 instructions (avx512_bf16 or
AMX), where a float32 model is then computed in bfloat16 (a 300-term float32 dot product
came back 0.066 off, against 4e-6 with the hint f32). The adapter therefore sets it for
every compile: ``f32`` for float32; ``bf16`` for bfloat16 and ``f16`` for float16 where
the plugin lists the capability (OPTIMIZATION_CAPABILITIES has BF16 / FP16), else ``f32``
(the plugin then converts the half inputs to float32, computes in float32 and rounds the
outputs once). It checks the compiled model's own INFERENCE_PRECISION_HINT against the
request: the plugin ignores an f16 hint it has no kernels for and keeps its default, which
is bf16 on such a CPU (an f16 model then runs in bfloat16). Half kernels accumulate in
float32 (oneDNN's), hence ``accumulation_dtype``; an op whose intermediate results are
rounded to the half dtype shows as 'widened'. float64 is not run: the CPU plugin has no
float64 kernels and computes a float64 model in float32 (0.1666666716 for 1/6).

The rest of the compile configuration, fixed: INFERENCE_NUM_THREADS from
$CONFORMANCE_OPENVINO_THREADS (default 1: a result must not depend on how many workers
share the cores), one stream, no CPU pinning, CPU_DENORMALS_OPTIMIZATION off (no
flush-to-zero of subnormals). ``import openvino`` sends a telemetry event (its model
converter, openvino.tools.ovc, does on import, in a forked process); the adapter imports
openvino without that module, which it does not use.

Arrays: float32/float16 go to ov.Tensor as they are; a bfloat16 array (ml_dtypes) goes as
its uint16 bits in an ov.Tensor of element type bf16, and a bf16 output tensor, whose
``.data`` NumPy shows as float16 (NumPy has no bfloat16), is read back as its uint16 bits
viewed as ml_dtypes.bfloat16: bit for bit both ways.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import numpy_dtype
from conformance.implementations import Unsupported
from conformance.implementations import openvino_builders as builders
from conformance.implementations import openvino_pool_builders as pools
from conformance.implementations.openvino_graph import ELEMENT_TYPES, OPSET, Graph

TESTED_DTYPES = ("float32", "float16", "bfloat16")
CAPABILITIES = {"float16": "FP16", "bfloat16": "BF16"}  # OPTIMIZATION_CAPABILITIES entries
TELEMETRY_FREE_IMPORT = 'sys.modules.setdefault("openvino.tools.ovc", None)'

Builder = Callable[[Graph, Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], None]


def _builders() -> dict[str, Builder]:
    """Catalogue op name -> builder(graph, arrays, parameters, config)."""
    ops: dict[str, Builder] = {}
    for dims in (1, 2, 3):

        def with_dims(function: Callable[..., None], dims: int = dims, **fixed: Any) -> Builder:
            return lambda g, a, p, c: function(g, a, p, c, dims, **fixed)

        ops[f"conv{dims}d"] = with_dims(builders.conv)
        ops[f"conv_transpose{dims}d"] = with_dims(builders.conv_transpose)
        ops[f"max_pool{dims}d"] = with_dims(pools.max_pool)
        ops[f"avg_pool{dims}d"] = with_dims(pools.avg_pool)
        for kind in ("avg", "max"):
            ops[f"adaptive_{kind}_pool{dims}d"] = with_dims(pools.adaptive_pool, kind=kind)
    ops["fold"] = pools.fold
    ops["unfold"] = pools.unfold
    ops["patch_embedding"] = builders.patch_embedding
    ops["depthwise_separable_conv"] = builders.depthwise_separable_conv
    ops["batch_norm"] = builders.batch_norm
    ops["conv_bn_relu"] = builders.conv_bn_relu
    ops["conv_max_pool"] = pools.conv_max_pool
    ops["conv_transpose_conv"] = builders.conv_transpose_conv
    return ops


def import_openvino() -> Any:
    """openvino, imported without openvino.tools.ovc (whose import sends telemetry)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)  # type: ignore[arg-type]
    import openvino

    return openvino


class OpenVinoImplementation:
    """OpenVINO's CPU plugin, one compiled model per (model, precision, threads)."""

    name = "openvino"
    values_per_configuration = 2  # the CPU plugin compiles each model (milliseconds)
    # milliseconds alone, seconds on a loaded machine: a 5 s limit called a compile that
    # ran beside two campaigns a hang (not reproduced alone)
    call_time_limit = 60.0
    # OpenVINO checks its own operator rules (shape inference), not torch's argument rules
    validates_like_torch = False

    def __init__(self) -> None:
        self._ov = import_openvino()
        self._opset = importlib.import_module(f"openvino.{OPSET}")
        self._ops = _builders()
        self.threads = int(os.environ.get("CONFORMANCE_OPENVINO_THREADS", "1"))
        self._core: Any = None
        self._core_pid = -1
        self._compiled: dict[tuple[str, str], Any] = {}
        self.compile_seconds: list[float] = []
        # the last call's model per (op, config): repro_lines renders it
        self._graphs: dict[tuple[str, str], tuple[Graph, str]] = {}
        from conformance.catalogue import CATALOGUE

        self._array_args = {spec.name: spec.array_args for spec in CATALOGUE}

    # -- the adapter protocol ------------------------------------------------------------
    def has(self, op: str) -> bool:
        return op in self._ops  # no backward; no lp_pool, channel_statistics, residual_block

    def supports(self, op: str, dtype: str) -> bool:
        return op in self._ops and dtype in TESTED_DTYPES

    def accumulation_dtype(self, dtype: str) -> str:
        """float32 for float16 and bfloat16: oneDNN's half convolutions and pools
        accumulate in float32, and without half kernels the plugin computes in float32."""
        return "float32" if dtype in CAPABILITIES else dtype

    def versions(self) -> dict[str, str]:
        return {"openvino": str(self._ov.__version__), "opset": OPSET}

    def platform(self) -> dict[str, Any]:
        """What decides the plugin's path: the precision per dtype, and the threads."""
        precisions = ",".join(f"{d}:{self.precision(d)}" for d in TESTED_DTYPES)
        return {"openvino precision": precisions, "threads": self.threads}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in self.__dict__.get("_ops", {}):
            return lambda *arrays, **config: self._forward(name, arrays, config)
        raise AttributeError(name)

    # -- compiling and running -----------------------------------------------------------
    def core(self) -> Any:
        """One ov.Core per process (the campaign's helpers are forked: none inherits one)."""
        if self._core is None or self._core_pid != os.getpid():
            self._core, self._core_pid = self._ov.Core(), os.getpid()
            self._compiled = {}
        return self._core

    def precision(self, dtype: str) -> str:
        """The INFERENCE_PRECISION_HINT a model of ``dtype`` compiles with."""
        wanted = CAPABILITIES.get(dtype)
        if wanted is None:
            return "f32"
        capabilities = self.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return ELEMENT_TYPES[dtype] if wanted in capabilities else "f32"

    def compile_config(self, dtype: str) -> dict[str, Any]:
        return {
            "INFERENCE_PRECISION_HINT": self.precision(dtype),
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False,
            "CPU_DENORMALS_OPTIMIZATION": False,
        }

    def _compile(self, graph: Graph, dtype: str) -> Any:
        config = self.compile_config(dtype)
        key = (graph.source(), repr(sorted(config.items())))
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        ov = self._ov
        outputs = [r.value.as_output()[1] for r in graph.results]
        model = ov.Model(outputs, [value.node for _, value in graph.parameters], "call")
        started = time.perf_counter()
        compiled = self.core().compile_model(model, "CPU", config)
        self.compile_seconds.append(time.perf_counter() - started)
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        wanted = config["INFERENCE_PRECISION_HINT"]
        if chosen != wanted:
            raise RuntimeError(f"the CPU plugin compiled with precision {chosen}, not {wanted}")
        self._compiled[key] = compiled
        return compiled

    def _tensor(self, array: np.ndarray) -> Any:
        ov = self._ov
        array = np.ascontiguousarray(array)
        if array.dtype == numpy_dtype("bfloat16"):
            return ov.Tensor(array.view(np.uint16), list(array.shape), ov.Type.bf16)
        return ov.Tensor(array)

    def _read(self, tensor: Any, index: bool) -> np.ndarray:
        data = np.array(tensor.data)  # a copy: the request reuses its buffers
        if index:
            return data.astype(np.int64)
        if tensor.element_type == self._ov.Type.bf16:
            return data.view(np.uint16).view(numpy_dtype("bfloat16"))
        return data

    def _forward(self, op: str, arrays: Sequence[Any], config: dict) -> Any:
        # trailing arrays left out of the call (at their default, None) or given by keyword
        names = self._array_args[op]
        named = {name: config.pop(name, None) for name in names}
        named.update(zip(names, arrays, strict=False))
        x = named["input"]
        dtype = "bfloat16" if x.dtype == numpy_dtype("bfloat16") else str(x.dtype)
        if not self.supports(op, dtype):
            raise Unsupported(f"the OpenVINO CPU plugin has no {dtype} kernels for {op}")
        graph = Graph(self._opset, self._ov.Type, dtype)
        params = {
            name: None if array is None else graph.parameter(name, array.shape)
            for name, array in named.items()
        }
        self._ops[op](graph, named, params, config)
        self._graphs[(op, repr(sorted(config.items())))] = (graph, dtype)
        compiled = self._compile(graph, dtype)
        request = compiled.create_infer_request()
        request.infer([self._tensor(named[name]) for name, _ in graph.parameters])
        results = tuple(
            self._read(request.get_output_tensor(i), r.index) for i, r in enumerate(graph.results)
        )
        return results[0] if len(results) == 1 else results

    # -- repro snippets ------------------------------------------------------------------
    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool,
        dtype: str = "float32",
    ) -> list[str]:
        """Lines that build the very model the adapter compiled, with openvino's opset16,
        compile it with the same configuration and run it (NumPy and openvino only)."""
        found = self._graphs.get((op, repr(sorted(config.items()))))
        if found is None:
            raise ValueError(f"repro_lines: {op} with this config has not been called")
        graph, dtype = found
        parameters = ", ".join(value.source for _, value in graph.parameters)
        lines = [
            TELEMETRY_FREE_IMPORT + "  # openvino without its model converter's telemetry",
            "import openvino as ov",
            f"import openvino.{OPSET} as ops",
            "",
            *graph.source().splitlines(),
            f"model = ov.Model(outputs, [{parameters}], 'call')",
            f"compiled = ov.Core().compile_model(model, 'CPU', {self.compile_config(dtype)!r})",
            "request = compiled.create_infer_request()",
        ]
        if dtype == "bfloat16":  # the snippet's arrays are float32 holding bfloat16 values
            lines += [
                "bits = lambda a: (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) "
                ">> 16).astype(np.uint16)",
                "feed = lambda a: ov.Tensor(bits(a), list(np.shape(a)), ov.Type.bf16)",
                "value = lambda t: (np.array(t.data).view(np.uint16).astype(np.uint32) << 16)"
                ".view(np.float32)",
            ]
        else:
            lines += [
                "feed = lambda a: ov.Tensor(np.ascontiguousarray(a))",
                "value = lambda t: np.array(t.data)",
            ]
        feeds = ", ".join(f"feed({name})" for name, _ in graph.parameters)
        lines.append(f"request.infer([{feeds}])")
        lines.append("got = {}")
        for i, result in enumerate(graph.results):
            read = "np.array(request.get_output_tensor({i}).data).astype(np.int64)"
            if not result.index:
                read = "value(request.get_output_tensor({i}))"
            lines.append(f"got[{result.name!r}] = {read.format(i=i)}")
        produced = {result.name for result in graph.results}
        # arrays the op updates in place (batch_norm's statistics): eval leaves them as given
        lines += [
            f"got[{n!r}] = {n}" for n in array_names if n in output_names and n not in produced
        ]
        return lines
