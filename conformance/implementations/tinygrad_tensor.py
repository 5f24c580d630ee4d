"""tinygrad on its CPU device: torch.nn.functional's ops written with tinygrad's Tensor.

Forward: the op's tinygrad function (tinygrad_ops) on Tensors made from the call's arrays.
Backward: tinygrad's autograd, ``out.gradient(*wrt, gradient=grad_output)``, with respect to
the entry's differentiable arrays that are present.

The CPU device renders C and builds it with a ``clang`` executable ($CC overrides the name;
gcc cannot stand in: tinygrad passes clang's --target and uses ext_vector_type), including
four programs it builds when the device opens; tinygrad's LLVM renderer (DEV=CPU:LLVM) needs
an LLVM with opaque pointers and fails on Debian 12's libLLVM 14/15. Without clang the
adapter refuses to load, naming what to install (Debian: apt-get install clang).

Hand-off: float64, float32 and float16 arrays become Tensors of their own dtype; bfloat16
(NumPy has none; the harness uses ml_dtypes) travels as its 16 bits, ``Tensor(bits
.view(uint16)).bitcast(bfloat16)``, and comes back the same way: exact both ways, no rounding.
That needs a clang whose x86 target has __bf16 as an arithmetic type (clang 17 or newer:
clang 14 rejects the type, clang 16 the casts tinygrad writes; ``native_bfloat16()`` probes
the compiler once). With an older clang tinygrad has no bfloat16 on this CPU, and the adapter
runs bfloat16 examples as a float32 round trip: the bfloat16 inputs widened to float32
(exact), tinygrad's float32 kernels, each result rounded once to bfloat16 (round to nearest
even, ml_dtypes) - declared by ``versions()`` and by a float32 accumulation.

Costs: tinygrad schedules, generates and compiles the kernels of each new graph (shapes,
dtypes, config) and caches them (in memory, and the built objects in its disk cache,
~/.cache/tinygrad/cache.db); the adapter records the time of each first call of a
configuration in this process apart from the later ones (``costs()``; with
$CONFORMANCE_TINYGRAD_COSTS set, written to that path plus the process id as JSON after each
call).

What tinygrad cannot express is declared per example (tinygrad_rules)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import numpy_dtype
from conformance.implementations import OpsByName, Unsupported, tinygrad_ops
from conformance.implementations.tinygrad_repro import repro_lines
from conformance.implementations.tinygrad_rules import unsupported_reason

FIRST_CALL_SECONDS: list[float] = []  # a new (op, direction, shapes, config): compiles
CALL_SECONDS: list[float] = []  # the same graph again: tinygrad's caches hit


def op_functions() -> dict[str, Callable[..., Any]]:
    """Catalogue op name -> tinygrad function taking Tensors and torch's keywords."""
    ops: dict[str, Callable[..., Any]] = {}
    for dims in (1, 2, 3):
        ops[f"conv{dims}d"] = tinygrad_ops.conv
        ops[f"conv_transpose{dims}d"] = tinygrad_ops.conv_transpose
        ops[f"max_pool{dims}d"] = functools.partial(tinygrad_ops.max_pool, dims=dims)
        ops[f"avg_pool{dims}d"] = functools.partial(tinygrad_ops.avg_pool, dims=dims)
    for name in (
        "batch_norm",
        "channel_statistics",
        "patch_embedding",
        "depthwise_separable_conv",
        "residual_block",
    ):
        ops[name] = getattr(tinygrad_ops, name)
    return ops


def compiler() -> str | None:
    """The C compiler tinygrad's CPU device runs ($CC, else clang), if it is installed."""
    return shutil.which(os.environ.get("CC", "clang"))


# what tinygrad's C renderer writes for a bfloat16 load with a zero fallback
BFLOAT16_PROBE = "__bf16 f(int c, __bf16* a) { return c ? a[0] : ((__bf16)(0.0f)); }\n"


@functools.cache
def native_bfloat16() -> bool:
    """Whether the compiler builds tinygrad's bfloat16 kernels for this CPU (with the flags
    tinygrad's ClangCompiler passes)."""
    cc = compiler()
    if cc is None:
        return False
    built = subprocess.run(
        [cc, "-c", "-x", "c", "-O2", "-ffreestanding", "-nostdlib", "-march=native",
         "--target=x86_64-none-unknown-elf", "-", "-o", os.devnull],
        input=BFLOAT16_PROBE, capture_output=True, text=True,
    )  # fmt: skip
    return built.returncode == 0


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class TinygradImplementation(OpsByName):
    """tinygrad's Tensor ops on its CPU device (clang), autograd for the backward."""

    name = "tinygrad"
    # clang compiles each new configuration's kernels (1-58 s): five value draws per compile
    values_per_configuration = 5
    # tinygrad has argument rules of its own (negative padding crops, any output_padding,
    # pooling padding past half the kernel): a call torch forbids that it accepts is counted
    # unsupported, not failed
    validates_like_torch = False
    # the first call of a configuration schedules, generates and compiles its kernels: up to
    # a few seconds for a backward (measured: costs()), over the default 5 s when loaded
    call_time_limit = 120.0

    def __init__(self) -> None:
        import tinygrad
        import tinygrad.helpers

        from conformance.catalogue import CATALOGUE

        if compiler() is None:
            raise ValueError(
                f"tinygrad's CPU device builds its kernels with {os.environ.get('CC', 'clang')!r}"
                ", which is not installed (Debian: apt-get install clang; gcc cannot stand in)"
            )
        # compile in this process: tinygrad's pool of spawned compile workers would be
        # inherited broken by the processes the isolation's zygote forks
        tinygrad.helpers.PARALLEL.value = 0
        self._tinygrad = tinygrad
        self._ops = op_functions()
        self._differentiable = {spec.name: spec.differentiable for spec in CATALOGUE}
        self._array_names = {spec.name: spec.array_args for spec in CATALOGUE}
        self._seen: set[Any] = set()
        self.first_call_seconds = FIRST_CALL_SECONDS
        self.call_seconds = CALL_SECONDS

    # -- declarations ----------------------------------------------------------------------
    def accumulation_dtype(self, dtype: str) -> str:
        """float32 for float16: tinygrad sums a float16 reduction in float32
        (sum_acc_dtype), and its CPU renderer's __fp16 products are computed in float, so
        a float16 convolution is float32 arithmetic rounded once. bfloat16 is kept at its
        own precision: tinygrad's conv2d multiplies in the input dtype, ``(x * w).sum()``,
        and the renderer, which emulates bfloat16 (create_non_native_float_pats), rounds
        each product to bfloat16 before the float32 sum (a 64-term bfloat16 dot product
        gives the rounded products' sum, not the exact one's rounding).
        The float32 round trip (an older clang) is float32 arithmetic rounded once.
        tests/harness/test_impl_tinygrad.py pins these."""
        if dtype == "bfloat16" and not native_bfloat16():
            return "float32"  # the float32 round trip
        return "float32" if dtype == "float16" else dtype

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        found = {"tinygrad": version("tinygrad")}  # the module has no __version__
        cc = compiler()
        if cc:
            banner = subprocess.run([cc, "--version"], capture_output=True, text=True)
            found["cc"] = banner.stdout.splitlines()[0] if banner.stdout else cc
        found["bfloat16"] = "native" if native_bfloat16() else "float32 round trip"
        return found

    def platform(self) -> dict[str, Any]:
        """What decides tinygrad's CPU kernels: the renderer, and its threads."""
        device = self._tinygrad.Device["CPU"]
        renderer = device.renderer
        return {
            "tinygrad renderer": type(renderer).__name__,
            "tinygrad target": str(renderer.target),
            "tinygrad threads": int(renderer.global_max[0]) if renderer.has_threads else 1,
        }

    def supports(self, op: str, dtype: str) -> bool:
        return True  # float64, float32, float16 and bfloat16 all run on the CPU device

    def warm_up(self) -> None:
        """What a helper pays on its first calls (opening the device builds four programs;
        tinygrad's rewrite rules warm their caches), paid once in the isolation's zygote.
        Its sqlite connection to the disk cache is closed after, so that the forked
        helpers open their own."""
        import tinygrad.helpers

        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
        w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
        out = self.conv2d(x, w, None, stride=2)
        self.conv2d_backward(np.ones_like(out), x, w, None, stride=2)
        self.max_pool2d(x, kernel_size=2)
        self.avg_pool2d(x, kernel_size=2)
        connection = tinygrad.helpers._db_connection
        if connection is not None:
            connection.close()
            tinygrad.helpers._db_connection = None

    @staticmethod
    def costs() -> dict[str, Any]:
        """Seconds of the first call of each configuration and of the later calls."""
        return {
            "first_calls": len(FIRST_CALL_SECONDS),
            "first_call_median_s": float(np.median(FIRST_CALL_SECONDS or [np.nan])),
            "first_call_max_s": float(np.max(FIRST_CALL_SECONDS or [np.nan])),
            "first_call_total_s": float(np.sum(FIRST_CALL_SECONDS)),
            "calls": len(CALL_SECONDS),
            "call_median_s": float(np.median(CALL_SECONDS or [np.nan])),
            "call_total_s": float(np.sum(CALL_SECONDS)),
        }

    # -- hand-off --------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray | None, requires_grad: bool = False) -> Any:
        """A realized Tensor holding ``array``: bfloat16 as its bits, bitcast (exact), or
        widened to float32 (exact) for the round trip."""
        if array is None:
            return None
        from tinygrad import Tensor, dtypes

        data = np.array(array, copy=True, order="C")
        if data.dtype != numpy_dtype("bfloat16"):
            tensor = Tensor(data)
        elif native_bfloat16():
            tensor = Tensor(data.view(np.uint16)).bitcast(dtypes.bfloat16)
        else:
            tensor = Tensor(data.astype(np.float32))
        tensor = tensor.realize()
        tensor.requires_grad = requires_grad
        return tensor

    def _array(self, tensor: Any, dtype: np.dtype) -> np.ndarray | None:
        """``tensor`` as NumPy; a bfloat16 call's float results (the round trip's float32)
        as bfloat16."""
        if tensor is None:
            return None
        from tinygrad import dtypes

        if tensor.dtype == dtypes.bfloat16:
            bits = np.array(tensor.bitcast(dtypes.uint16).numpy())
            return bits.view(numpy_dtype("bfloat16"))
        array = np.array(tensor.numpy())
        if dtype == numpy_dtype("bfloat16") and array.dtype.kind == "f":
            return array.astype(dtype)  # the round trip's one rounding (nearest even)
        return array

    # -- running -----------------------------------------------------------------------------
    def _timed(self, key: Any, run: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = run()
        elapsed = time.perf_counter() - started
        (self.call_seconds if key in self._seen else self.first_call_seconds).append(elapsed)
        self._seen.add(key)
        _write_costs()  # the helpers end by os._exit: no atexit hook runs there
        return result

    def _key(self, op: str, direction: str, arrays: Sequence[Any], config: Mapping) -> Any:
        shapes = tuple(None if a is None else (a.shape, str(a.dtype)) for a in arrays)
        return (op, direction, shapes, tuple(sorted((k, _frozen(v)) for k, v in config.items())))

    def _function(
        self, op: str, arrays: Sequence[Any], config: Mapping[str, Any], direction: str
    ) -> Callable[..., Any]:
        reason = unsupported_reason(op, arrays, config, direction)
        if reason:
            raise Unsupported(reason)
        return functools.partial(self._ops[op], **{k: _frozen(v) for k, v in config.items()})

    def _forward(self, op: str, arrays: Sequence[np.ndarray | None], config: dict) -> Any:
        function = self._function(op, arrays, config, "forward")
        dtype = _dtype(arrays)

        def run() -> Any:
            out = function(*(self._tensor(a) for a in arrays))
            outputs = out if isinstance(out, tuple) else (out,)
            return [self._array(o, dtype) for o in outputs]

        outputs = self._timed(self._key(op, "forward", arrays, config), run)
        if op == "batch_norm":  # (output, running_mean, running_var): update in place
            for array, updated in zip(arrays[1:3], outputs[1:], strict=True):
                if array is not None and updated is not None:
                    np.copyto(array, updated)
            return outputs[0]
        if "max_pool" in op and config.get("return_indices"):
            return outputs[0], np.asarray(outputs[1]).astype(np.int64)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _backward(
        self,
        op: str,
        grad_output: np.ndarray,
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> tuple[np.ndarray | None, ...]:
        function = self._function(op, arrays, config, "backward")
        names = self._array_names[op]
        wanted = [i for i, n in enumerate(names) if n in self._differentiable[op]]
        present = [i for i in wanted if i < len(arrays) and arrays[i] is not None]

        def run() -> dict[int, np.ndarray | None]:
            tensors = [self._tensor(a, i in present) for i, a in enumerate(arrays)]
            out = function(*tensors)
            value = out[0] if isinstance(out, tuple) else out
            grads = value.gradient(
                *(tensors[i] for i in present), gradient=self._tensor(grad_output)
            )
            dtype = _dtype(arrays)
            return {i: self._array(g, dtype) for i, g in zip(present, grads, strict=True)}

        key = self._key(op, "backward", (grad_output, *arrays), config)
        found = self._timed(key, run)
        return tuple(found.get(i) for i in wanted)

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool | str,
        dtype: str = "float64",
    ) -> list[str]:
        """Lines computing ``got`` with tinygrad alone (tinygrad_repro)."""
        differentiable = [n for n in array_names if n in self._differentiable[op]]
        round_trip = dtype == "bfloat16" and not native_bfloat16()
        return repro_lines(
            self._ops[op], array_names, output_names, differentiable, bool(backward), dtype,
            round_trip,
        )  # fmt: skip


def _dtype(arrays: Sequence[np.ndarray | None]) -> np.dtype:
    """The call's floating dtype (its first float array's)."""
    for array in arrays:
        if array is not None and (
            array.dtype.kind == "f" or array.dtype == numpy_dtype("bfloat16")
        ):
            return np.dtype(array.dtype)
    return np.dtype(np.float64)


def _write_costs() -> None:
    """$CONFORMANCE_TINYGRAD_COSTS: where to write this process's first-call and call costs."""
    path = os.environ.get("CONFORMANCE_TINYGRAD_COSTS")
    if path and (FIRST_CALL_SECONDS or CALL_SECONDS):
        with open(f"{path}.{os.getpid()}", "w") as stream:
            json.dump(TinygradImplementation.costs(), stream, indent=2)
