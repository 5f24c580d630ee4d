"""TensorFlow on the CPU, eager: torch.nn.functional's ops written with tf.nn, oneDNN as
TensorFlow ships it (TF_ENABLE_ONEDNN_OPTS unset: on for x86 builds).

The ops live in tensorflow_nn_conv (convolutions, transposed convolutions, unfold, fold, the
two conv blocks), tensorflow_nn_pool (max, average and adaptive pooling) and
tensorflow_nn_norm (batch norm, channel statistics, the residual block, and the directions).
Backward is tf.GradientTape, jvp tf.autodiff.ForwardAccumulator, double backward two nested
GradientTapes; repro snippets carry those modules' functions verbatim.

Layout matters: TensorFlow's CPU convolution and pooling kernels take channels-last data
only (NWC, NHWC, NDHWC; Conv2D refuses NCHW on the CPU), so every op transposes torch's
(N, C, *spatial) in and out, and weights to (*k, in/groups, out): exact data movement, but
the kernels TensorFlow picks are its channels-last ones (oneDNN's for float32 and bfloat16
convolutions, Eigen's for float64 and float16). batch_norm's fused kernel gets (N, C) and
(N, C, L) as (N, 1, 1, C) and (N, 1, L, C).

Not run: lp pooling (tf.nn has no power-average pooling). Unsupported per example (the
functions raise Inexpressible): adaptive pooling with uneven windows, average pooling whose
divisors no 'VALID' or 'SAME' call has, return_indices in 3-d or with dilation,
channel_statistics with correction != 0, dilation where the dtype's CPU kernel has none.
Whole groups with no CPU kernel (supports): 3-d max and average pooling in float64 and
float16 (MaxPool3D and AvgPool3D have float32 and bfloat16 only, and half on GPUs).

Threads: one intra-op and one inter-op thread unless $CONFORMANCE_TF_THREADS says how many
intra-op threads (0: TensorFlow's default, every core), so that a run's rows do not depend on
how many workers share the cores; set in the zygote before TensorFlow starts its runtime.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no start-up banner: set before the import
from conformance.implementations import (
    OpsByName,
    Unsupported,
    tensorflow_nn_conv,
    tensorflow_nn_norm,
    tensorflow_nn_pool,
)
from conformance.implementations.snippets import function_sources
from conformance.implementations.tensorflow_nn_conv import (
    Inexpressible,
    depthwise_path,
    per_dim,
)

SOURCE_MODULES = (tensorflow_nn_conv, tensorflow_nn_pool, tensorflow_nn_norm)
HALF = ("float16", "bfloat16")
# MaxPool3D / AvgPool3D (and so adaptive 3-d pooling) have CPU kernels for float32 and
# bfloat16 only: "Value for attr 'T' of double is not in the list of allowed values: half,
# bfloat16, float", and float16 "Could not find device for node: MaxPool3D[T=DT_HALF]"
NO_KERNEL = {
    (op, dtype)
    for op in ("max_pool3d", "avg_pool3d", "adaptive_max_pool3d", "adaptive_avg_pool3d")
    for dtype in ("float64", "float16")
}


EIGEN_GRADIENT_DTYPES = ("float64", "float16")


def _op_functions() -> dict[str, Callable[..., Any]]:
    """Catalogue op name -> TensorFlow function taking tensors and torch's keywords."""
    conv, pool, norm = tensorflow_nn_conv, tensorflow_nn_pool, tensorflow_nn_norm
    ops: dict[str, Callable[..., Any]] = {}
    for dims in (1, 2, 3):
        ops[f"conv{dims}d"] = conv.conv
        ops[f"conv_transpose{dims}d"] = conv.conv_transpose
        for kind in ("max", "avg"):
            ops[f"{kind}_pool{dims}d"] = functools.partial(getattr(pool, f"{kind}_pool"), dims=dims)
            function = getattr(pool, f"adaptive_{kind}_pool")
            ops[f"adaptive_{kind}_pool{dims}d"] = functools.partial(function, dims=dims)
    for name in ("unfold", "fold", "patch_embedding", "depthwise_separable_conv"):
        ops[name] = getattr(conv, name)
    for name in ("batch_norm", "channel_statistics", "residual_block"):
        ops[name] = getattr(norm, name)
    return ops


class TensorFlowImplementation(OpsByName):
    """tf.nn on the CPU, eager, oneDNN on; GradientTape, ForwardAccumulator, nested tapes."""

    name = "tensorflow"
    derivatives = True  # forward-mode AD and double backward
    # TensorFlow checks arguments by rules of its own ('SAME' at any stride, pooling padding
    # up to the kernel, ...): a call torch forbids that it accepts is counted unsupported
    validates_like_torch = False

    def __init__(self) -> None:
        import tensorflow as tf

        from conformance.catalogue import CATALOGUE

        self._tf = tf
        self.threads = int(os.environ.get("CONFORMANCE_TF_THREADS", "1"))
        # before any op runs (the runtime starts with its first op, in a forked helper)
        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self._ops = _op_functions()
        self._differentiable = {
            spec.name: tuple(name in spec.differentiable for name in spec.array_args)
            for spec in CATALOGUE
        }

    def accumulation_dtype(self, dtype: str) -> str:
        """float32 for float16 and bfloat16: TensorFlow's half convolutions (Conv2D, Conv3D,
        their transposes; oneDNN's for bfloat16, Eigen's contraction for float16) sum in
        float32 (a float16 conv2d of 2050 ones gives 2050; summed in float16 it would stall
        at 2048), and fused batch norm keeps float32 statistics. Not so Eigen's float16
        depthwise convolution and Conv2DBackpropInput (the same sum gives 2048), nor
        BiasAddGrad in bfloat16 (258 ones give 256; tf.reduce_sum gives 258): those
        results are then reported as 'widened'."""
        return "float32" if dtype in HALF else dtype

    def versions(self) -> dict[str, str]:
        return {"tensorflow": str(self._tf.__version__)}

    def platform(self) -> dict[str, object]:
        """What decides TensorFlow's CPU kernels here: oneDNN on or off, and the threads."""
        from tensorflow.python.util import _pywrap_util_port

        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
        return {
            "tensorflow onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "TF_ENABLE_ONEDNN_OPTS": onednn,
            "threads": self.threads,
        }

    def supports(self, op: str, dtype: str) -> bool:
        return (self._split(op)[0], dtype) not in NO_KERNEL

    # -- conversion ------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray | None) -> Any:
        return None if array is None else self._tf.constant(array)  # bfloat16 via ml_dtypes

    @staticmethod
    def _array(tensor: Any) -> np.ndarray | None:
        return None if tensor is None else np.asarray(tensor.numpy())

    def _function(
        self, op: str, config: Mapping[str, Any], direction: str = "forward"
    ) -> Callable[..., Any]:
        """The op with its config; jvp and double backward differentiate the values alone,
        as the torch adapter does (return_indices dropped: tf.nn.max_pool_with_argmax's
        gradient, MaxPoolGradWithArgmax, has no gradient of its own)."""
        if direction in ("jvp", "double_backward"):
            config = {k: v for k, v in config.items() if k != "return_indices"}
        return functools.partial(self._ops[op], **config)

    def _wanted(self, op: str, count: int) -> tuple[bool, ...]:
        return self._differentiable.get(op, (True,) * count)[:count]

    @staticmethod
    def _derivable(op: str, arrays: Sequence[np.ndarray | None], config: Mapping) -> None:
        """Unsupported where a derivative needs a kernel TensorFlow lacks: the gradients of a
        dilated or grouped 1-d or 2-d convolution in float64 or float16, whose Eigen
        Conv2DBackpropInput and Conv2DBackpropFilter have neither ("Current CPU
        implementations do not yet support dilation rates larger than 1", "Gradients for
        grouped convolutions are not supported on CPU"); the oneDNN ones (float32,
        bfloat16) have both, the forward Conv2D has both, and the depthwise path dilates by
        space-to-batch and has its own gradient kernels."""
        if not op.startswith(("conv1d", "conv2d")) or arrays[0] is None or arrays[1] is None:
            return
        dtype, weight = str(arrays[0].dtype), arrays[1]
        groups, dims = int(config.get("groups", 1)), weight.ndim - 2
        strides = per_dim(config.get("stride", 1), dims)
        dilations = per_dim(config.get("dilation", 1), dims)
        channels = weight.shape[1] * groups
        if dtype not in EIGEN_GRADIENT_DTYPES or depthwise_path(
            dims, groups, channels, strides, dilations
        ):
            return  # oneDNN's kernels, or the depthwise path
        dilated = max(dilations) > 1
        if dilated or groups > 1:
            raise Unsupported(
                f"the gradient of a {'dilated' if dilated else 'grouped'} {dtype} {op}: "
                "TensorFlow's CPU Conv2DBackpropInput and Conv2DBackpropFilter for this dtype "
                "(Eigen's) have no dilation and no groups; its oneDNN kernels (float32, "
                "bfloat16) have both"
            )

    # -- the directions --------------------------------------------------------------------
    def _forward(
        self, op: str, arrays: Sequence[np.ndarray | None], config: dict
    ) -> np.ndarray | tuple[np.ndarray | None, ...] | None:
        try:
            out = self._function(op, config)(*(self._tensor(a) for a in arrays))
        except Inexpressible as reason:
            raise Unsupported(str(reason)) from None
        if op == "batch_norm":  # (output, running_mean, running_var): update in place
            out, *running = out
            for array, updated in zip(arrays[1:3], running, strict=True):
                if array is not None and updated is not None:
                    np.copyto(array, np.asarray(updated.numpy()))
        if isinstance(out, (tuple, list)):
            return tuple(self._array(o) for o in out)
        return self._array(out)

    def _backward(
        self, op: str, grad_output: np.ndarray, arrays: Sequence[np.ndarray | None], config: dict
    ) -> tuple[np.ndarray | None, ...]:
        self._derivable(op, arrays, config)
        try:
            grads = tensorflow_nn_norm.run_backward(
                self._function(op, config),
                self._tensor(grad_output),
                [self._tensor(a) for a in arrays],
                self._wanted(op, len(arrays)),
            )
        except Inexpressible as reason:
            raise Unsupported(str(reason)) from None
        return tuple(self._array(g) for g in grads)

    def _jvp(
        self,
        op: str,
        tangents: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> np.ndarray | None:
        self._derivable(op, arrays, config)
        try:
            out = tensorflow_nn_norm.run_jvp(
                self._function(op, config, "jvp"),
                [self._tensor(t) for t in tangents],
                [self._tensor(a) for a in arrays],
                self._wanted(op, len(arrays)),
            )
        except Inexpressible as reason:
            raise Unsupported(str(reason)) from None
        return self._array(out)

    def _double_backward(
        self,
        op: str,
        grad_output: np.ndarray,
        grad_grads: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> tuple[np.ndarray | None, ...]:
        self._derivable(op, arrays, config)
        try:
            values = tensorflow_nn_norm.run_double_backward(
                self._function(op, config, "double_backward"),
                self._tensor(grad_output),
                [self._tensor(v) for v in grad_grads],
                [self._tensor(a) for a in arrays],
                self._wanted(op, len(arrays)),
            )
        except Inexpressible as reason:
            raise Unsupported(str(reason)) from None
        return tuple(self._array(v) for v in values)

    # -- repro snippets --------------------------------------------------------------------
    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool | str,
        dtype: str = "float64",
    ) -> list[str]:
        """Lines computing ``got`` with TensorFlow alone: the op's functions and the
        directions' (their source, verbatim), called as the adapter calls them."""
        function = self._ops[op]
        bound = dict(function.keywords) if isinstance(function, functools.partial) else {}
        base = function.func if isinstance(function, functools.partial) else function
        runners: dict[str, Callable[..., Any]] = {
            "jvp": tensorflow_nn_norm.run_jvp,
            "double_backward": tensorflow_nn_norm.run_double_backward,
        }
        runner = runners.get(str(backward), tensorflow_nn_norm.run_backward)
        lines = [
            "import functools",
            "import itertools",
            "import math",
            "import os",
            "from collections.abc import Callable, Sequence",
            "from typing import Any",
            "",
            'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")',
            "import tensorflow as tf",
            "",
            f"tf.config.threading.set_intra_op_parallelism_threads({self.threads})",
            "tf.config.threading.set_inter_op_parallelism_threads(1)",
            "",
            *function_sources([base, runner] if backward else [base], SOURCE_MODULES),
        ]
        cast = ", tf.bfloat16" if dtype == "bfloat16" else ""
        dropped = ("return_indices",) if backward in ("jvp", "double_backward") else ()
        lines += [
            f"call_config = {{k: v for k, v in config.items() if k not in {dropped!r}}}",
            f"as_tensor = lambda a: None if a is None else tf.cast(tf.constant(a){cast})"
            if cast
            else "as_tensor = lambda a: None if a is None else tf.constant(a)",
            "as_numpy = lambda t: None if t is None else (tf.cast(t, tf.float32) "
            "if t.dtype == tf.bfloat16 else t).numpy()",
            f"function = functools.partial({base.__name__}, **call_config, **{bound!r})",
            f"arrays = [as_tensor(a) for a in ({', '.join(array_names)},)]",
            f"wanted = {self._wanted(op, len(array_names))!r}",
        ]
        if backward == "jvp":
            lines += [
                "out = run_jvp(function, [as_tensor(t) for t in tangents], arrays, wanted)",
                f"got = {{{output_names[0]!r}: as_numpy(out)}}",
            ]
        elif backward == "double_backward":
            lines += [
                "values = run_double_backward(function, as_tensor(grad_output), "
                "[as_tensor(v) for v in grad_grads], arrays, wanted)",
                f"got = dict(zip({tuple(output_names)!r}, map(as_numpy, values)))",
            ]
        elif backward:
            lines += [
                "grads = run_backward(function, as_tensor(grad_output), arrays, wanted)",
                f"got = dict(zip({tuple(output_names)!r}, map(as_numpy, grads)))",
            ]
        else:
            lines += [
                "out = function(*arrays)",
                "outputs = out if isinstance(out, tuple) else (out,)",
                f"got = dict(zip({tuple(output_names)!r}, map(as_numpy, outputs)))",
            ]
        return lines
