"""ONNX: each catalogue call is a small ONNX graph (onnx_graphs), run by onnxruntime's CPU
execution provider or by onnx's own NumPy ReferenceEvaluator.

Forward only: ONNX inference graphs have no autograd, so no ``<op>_backward`` exists.
Sessions are cached per (op, dtype, graph, input shapes), so a campaign pays for building
each graph once; ``session_seconds`` keeps each build's cost (measured: median 2.8 ms per
onnxruntime session, 0.4 ms per ReferenceEvaluator; a cached call about 0.5 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.implementations import Unsupported, onnx_graphs
from conformance.implementations import onnx_graphs as graphs
from conformance.implementations import onnx_pool_graphs as pool
from conformance.implementations.onnx_graphs import IR_VERSION, OPSET, GraphPlan

# Ops whose onnxruntime 1.31.1 CPU kernels have no float64 registration (session creation
# raises NOT_IMPLEMENTED "Could not find an implementation for Conv(22) node ..."): Conv,
# ConvTranspose, AveragePool, LpPool, GlobalAveragePool, Col2Im. MaxPool, Pad and
# BatchNormalization have float64 kernels. No CPU kernel of these takes bfloat16.
ORT_NO_FLOAT64 = (
    "conv",
    "avg_pool",
    "lp_pool",
    "adaptive_avg_pool",
    "fold",
    "patch_embedding",
    "depthwise_separable_conv",
)
TESTED_DTYPES = ("float64", "float32", "float16")


def _elem_type(dtype: np.dtype) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def make_model(plan: GraphPlan, feeds: Mapping[str, np.ndarray], dtype: np.dtype) -> Any:
    """The ModelProto of ``plan`` with fixed input shapes (as the repro snippet builds it)."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node(n.op_type, list(n.inputs), list(n.outputs), **n.attributes)
        for n in plan.nodes
    ]
    inputs = [
        helper.make_tensor_value_info(name, _elem_type(value.dtype), value.shape)
        for name, value in feeds.items()
        if name not in plan.initializers
    ]
    outputs = [
        helper.make_tensor_value_info(
            r.output, _elem_type(np.dtype(np.int64) if r.plane_of else dtype), None
        )
        for r in plan.results
    ]
    constants = [numpy_helper.from_array(v, k) for k, v in plan.constants.items()]
    constants += [numpy_helper.from_array(feeds[k], k) for k in plan.initializers]
    graph = helper.make_graph(nodes, "call", inputs, outputs, initializer=constants)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )


def build(
    op: str, arrays: Mapping[str, Any], config: Mapping[str, Any], dtype: str
) -> graphs.GraphPlan:
    """The plan of one call of catalogue op ``op``: its graph, from the conv and pool
    builders."""
    dims = int(op[-2]) if op[-2:-1].isdigit() and op.endswith("d") else 0
    if op.startswith("conv_transpose") and dims:
        return graphs.conv_transpose(arrays, config, dims)
    if op.startswith("conv") and dims:
        return graphs.conv(arrays, config, dims)
    if op.startswith("max_pool"):
        return pool.max_pool(arrays, config, dims)
    if op.startswith("avg_pool"):
        return pool.avg_pool(arrays, config, dims)
    if op.startswith("lp_pool"):
        return pool.lp_pool(arrays, config, dims)
    if op.startswith("adaptive_"):
        return pool.adaptive_pool(arrays, config, dims, op.split("_")[1])
    if op == "conv_bn_relu":
        return graphs.conv_bn_relu(arrays, config)
    if op == "conv_max_pool":
        return pool.conv_max_pool(arrays, config)
    builders = {
        "fold": graphs.fold,
        "patch_embedding": graphs.patch_embedding,
        "depthwise_separable_conv": graphs.depthwise_separable_conv,
        "conv_transpose_conv": graphs.conv_transpose_conv,
    }
    if op == "batch_norm":
        return graphs.batch_norm(arrays, config, dtype)
    return builders[op](arrays, config)


class _OnnxImplementation:
    """What both runners share: plans, feeds, results, the session cache, repro lines."""

    name = "onnx"
    # ONNX checks its own operator rules, not torch.nn.functional's argument checks
    validates_like_torch = False
    runner_import = ""

    def __init__(self) -> None:
        import onnx

        self._onnx = onnx
        self._sessions: dict[tuple[Any, ...], Callable[[dict[str, np.ndarray]], list[Any]]] = {}
        self.session_seconds: list[float] = []
        # the plan of the last call per (op, config): repro_lines renders it (the snippet's
        # arrays are the very ones that call had)
        self._plans: dict[tuple[str, str], GraphPlan] = {}
        from conformance.catalogue import CATALOGUE

        self._array_args = {spec.name: spec.array_args for spec in CATALOGUE}

    # -- the adapter protocol ------------------------------------------------------------
    def has(self, op: str) -> bool:
        return op in onnx_graphs.OPS  # no backward; no unfold (ONNX has no im2col operator)

    def supports(self, op: str, dtype: str) -> bool:
        return not op.endswith("_backward") and dtype in TESTED_DTYPES

    def accumulation_dtype(self, dtype: str) -> str:
        return dtype

    def versions(self) -> dict[str, str]:
        return {"onnx": str(self._onnx.__version__), "opset": str(OPSET)}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in onnx_graphs.OPS:
            return lambda *arrays, **config: self._forward(name, arrays, config)
        raise AttributeError(name)

    # -- running -------------------------------------------------------------------------
    def _session(self, model: Any) -> Callable[[dict[str, np.ndarray]], list[Any]]:
        raise NotImplementedError

    def _forward(self, op: str, arrays: Sequence[Any], config: dict) -> Any:
        # a call may leave trailing optional arrays out (bias=None omitted): None for them
        named: dict[str, Any] = dict.fromkeys(self._array_args[op])
        named.update(zip(self._array_args[op], arrays, strict=False))
        dtype = np.dtype(named["input"].dtype)
        if not self.supports(op, str(dtype)):
            raise Unsupported(f"{self.name} has no {dtype} kernel for {op}")
        plan = build(op, named, config, str(dtype))
        self._plans[(op, repr(sorted(config.items())))] = plan
        feeds = {f.name: onnx_graphs.feed_value(f, named, dtype) for f in plan.feeds}
        shapes = tuple((k, v.shape) for k, v in feeds.items())
        # the graph is fixed by its nodes, outputs, constants and input shapes and types
        graph = (plan.nodes, plan.results, {k: v.tolist() for k, v in plan.constants.items()})
        baked = tuple(feeds.pop(k).tobytes() for k in plan.initializers)  # part of the model
        key = (op, str(dtype), shapes, repr(graph), baked)
        run = self._sessions.get(key)
        if run is None:
            started = time.perf_counter()
            model_feeds = {f.name: onnx_graphs.feed_value(f, named, dtype) for f in plan.feeds}
            run = self._session(make_model(plan, model_feeds, dtype))
            self.session_seconds.append(time.perf_counter() - started)
            self._sessions[key] = run
        outputs = dict(zip([r.output for r in plan.results], run(feeds), strict=True))
        results = {
            r.name: np.asarray(onnx_graphs.result_value(r, np.asarray(outputs[r.output]), feeds))
            for r in plan.results
        }
        for name in plan.write_back:  # batch_norm's running statistics, updated in place
            np.copyto(named[name], results.pop(name))
        values = tuple(results.values())
        return values[0] if len(values) == 1 else values

    # -- repro snippets ------------------------------------------------------------------
    def _run_lines(self) -> list[str]:
        raise NotImplementedError

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool,
        dtype: str = "float64",
    ) -> list[str]:
        """Lines that build the very graph the adapter ran, with onnx.helper, and run it."""
        plan = self._plans.get((op, repr(sorted(config.items()))))
        if plan is None:
            raise ValueError(f"repro_lines: {op} with this config has not been called")
        lines = ["import onnx", "from onnx import helper, numpy_helper", self.runner_import, ""]
        lines.append("nodes = [")
        for n in plan.nodes:
            attributes = "".join(f", {k}={v!r}" for k, v in n.attributes.items())
            lines.append(
                f"    helper.make_node({n.op_type!r}, {list(n.inputs)!r}, {list(n.outputs)!r}"
                f"{attributes}),"
            )
        lines.append("]")
        lines.append("constants = [")
        for key, constant in plan.constants.items():
            lines.append(
                f"    numpy_helper.from_array(np.array({constant.tolist()!r}, dtype=np.int64), "
                f"{key!r}),"
            )
        lines.append("]")
        lines.append("feeds = {")
        for f in plan.feeds:
            value: str
            if f.source is None:
                value = f"np.full({f.length}, {f.fill!r}, dtype=input.dtype)"
            else:
                value = f"np.ascontiguousarray({f.source})" + ("[np.newaxis]" if f.batch else "")
            lines.append(f"    {f.name!r}: {value},")
        lines.append("}")
        if plan.initializers:  # constant weights, baked into the model (onnx_graphs.GraphPlan)
            lines.append(f"baked = {{k: feeds.pop(k) for k in {list(plan.initializers)!r}}}")
            lines.append("constants += [numpy_helper.from_array(v, k) for k, v in baked.items()]")
        outputs = [r.output for r in plan.results]
        elem = "lambda a: int(helper.np_dtype_to_tensor_dtype(np.dtype(a)))"
        lines += [
            f"elem = {elem}",
            f"outputs = {outputs!r}",
            "graph = helper.make_graph(nodes, 'call', [helper.make_tensor_value_info(k, "
            "elem(v.dtype), v.shape) for k, v in feeds.items()], [helper.make_tensor_value_info("
            "o, elem(np.int64 if o == 'Indices' else input.dtype), None) for o in outputs], "
            "initializer=constants)",
            f"model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', {OPSET})],"
            f" ir_version={IR_VERSION})",
            *self._run_lines(),
            "got = {}",
        ]
        for r in plan.results:
            value = f"np.asarray(produced[{r.output!r}])"
            if r.plane_of is not None:  # ONNX's index over (N, C, *spatial) -> per (n, c) plane
                shape = f"feeds[{r.plane_of!r}].shape"
                value = (
                    f"({value} - (np.arange({shape}[0] * {shape}[1]).reshape({shape}[0], "
                    f"{shape}[1], *([1] * (len({shape}) - 2))) * int(np.prod({shape}[2:]))))"
                )
            lines.append(f"got[{r.name!r}] = {value}{'[0]' if r.unbatch else ''}")
        return lines


class OnnxRuntimeImplementation(_OnnxImplementation):
    """onnxruntime's CPU execution provider, default graph optimizations, one thread.

    float16: on x86 the CPU EP has no float16 Conv/ConvTranspose/pool/BatchNormalization
    kernels (MLAS's float16 convolution is ARM64-only, MLAS_F16VEC_INTRINSICS_SUPPORTED), so
    onnxruntime's InsertCastTransformer (onnxruntime/core/optimizer/insert_cast_transformer.cc)
    wraps each such node in Cast to float32 and back: the arithmetic, accumulation included,
    is float32 and only the result is rounded to float16 (checked: the optimized model is
    Cast, Conv, Cast)."""

    name = "onnxruntime"
    runner_import = "import onnxruntime"

    def __init__(self) -> None:
        super().__init__()
        import onnxruntime

        self._ort = onnxruntime

    def supports(self, op: str, dtype: str) -> bool:
        if not super().supports(op, dtype):
            return False
        base = op.rstrip("123d").rstrip("_") if op[-2:] in ("1d", "2d", "3d") else op
        return not (dtype == "float64" and base.startswith(ORT_NO_FLOAT64))

    def accumulation_dtype(self, dtype: str) -> str:
        return "float32" if dtype == "float16" else dtype

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "onnxruntime": str(self._ort.__version__)}

    def _session(self, model: Any) -> Callable[[dict[str, np.ndarray]], list[Any]]:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = self._ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: session.run(names, feeds)

    def _run_lines(self) -> list[str]:
        return [
            "session = onnxruntime.InferenceSession(model.SerializeToString(), "
            "providers=['CPUExecutionProvider'])",
            "produced = dict(zip(outputs, session.run(outputs, feeds)))",
        ]


class OnnxReferenceImplementation(_OnnxImplementation):
    """onnx.reference.ReferenceEvaluator: the operators written in NumPy, in the input's
    dtype (float16 arrays stay float16; numpy's float16 matmul, which the reference Conv
    uses, sums in float32 internally, other ops round every step to float16). The declared
    accumulation is therefore the dtype itself (the default), the precision every op keeps."""

    name = "onnx-reference"
    runner_import = "from onnx.reference import ReferenceEvaluator"

    def _session(self, model: Any) -> Callable[[dict[str, np.ndarray]], list[Any]]:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda feeds: evaluator.run(None, feeds)

    def _run_lines(self) -> list[str]:
        return ["produced = dict(zip(outputs, ReferenceEvaluator(model).run(None, feeds)))"]
