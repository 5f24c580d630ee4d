"""JAX on the CPU: torch.nn.functional's ops written with jax.lax and jnp, float64 enabled.

Forward: the op's jax function (jax_lax_conv, jax_lax_pool), jitted with the example's
config fixed. Backward: ``jax.vjp`` of that same function with respect to the entry's
differentiable arrays that are present, applied to grad_output. Each (op, direction, dtype,
shapes, config) is lowered and compiled once and cached, and the compile and call times are
kept (``costs()``; with $CONFORMANCE_JAX_COSTS set they are written there as JSON at exit).

What the adapter cannot express it declares per example (jax_lax_rules): pooling with
argmax indices, the gradient of dilated max pooling, and calls breaking a torch argument
rule where lax has a meaning of its own (negative padding crops, and so on).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import HALF_DTYPES
from conformance.implementations import OpsByName, Unsupported, jax_lax_conv, jax_lax_pool
from conformance.implementations.jax_lax_rules import unsupported_reason
from conformance.implementations.snippets import function_sources

SOURCE_MODULES = (jax_lax_conv, jax_lax_pool)
COMPILE_SECONDS: list[float] = []  # one entry per new (op, direction, shapes, config)
CALL_SECONDS: list[float] = []  # one entry per call of a compiled function


def _op_functions() -> dict[str, Callable[..., Any]]:
    """Catalogue op name -> jax function taking the arrays and torch's keywords."""
    conv, pool = jax_lax_conv, jax_lax_pool
    ops: dict[str, Callable[..., Any]] = {}
    for dims in (1, 2, 3):
        ops[f"conv{dims}d"] = conv.conv
        ops[f"conv_transpose{dims}d"] = conv.conv_transpose
        for kind in ("max", "avg", "lp"):
            ops[f"{kind}_pool{dims}d"] = functools.partial(getattr(pool, f"{kind}_pool"), dims=dims)
        for kind in ("avg", "max"):
            function = getattr(pool, f"adaptive_{kind}_pool")
            ops[f"adaptive_{kind}_pool{dims}d"] = functools.partial(function, dims=dims)
    for name in (
        "unfold",
        "fold",
        "batch_norm",
        "channel_statistics",
        "patch_embedding",
        "depthwise_separable_conv",
        "residual_block",
        "conv_transpose_conv",
    ):
        ops[name] = getattr(conv, name)
    ops["conv_max_pool"] = pool.conv_max_pool
    return ops


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class JaxImplementation(OpsByName):
    """jax.lax / jnp compositions on the CPU, float64 enabled, one compilation per config."""

    name = "jax"
    values_per_configuration = 2  # XLA compiles each configuration (0.1-0.75 s)
    derivatives = True  # jax.jvp, and jax.vjp of the vjp
    # lax gives negative padding, strided SAME, ... meanings of its own; the adapter declares
    # the ones it maps (jax_lax_rules), and any other call torch forbids that jax accepts is
    # counted unsupported, not failed
    validates_like_torch = False

    def __init__(self) -> None:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax

        from conformance.catalogue import CATALOGUE

        jax.config.update("jax_enable_x64", True)
        self._jax = jax
        self._ops = _op_functions()
        self._differentiable = {spec.name: spec.differentiable for spec in CATALOGUE}
        self._array_names = {spec.name: spec.array_args for spec in CATALOGUE}
        self._compiled: dict[Any, Any] = {}
        # shared by every instance of the process (the campaign may build several)
        self.compile_seconds = COMPILE_SECONDS
        self.call_seconds = CALL_SECONDS

    def accumulation_dtype(self, dtype: str) -> str:
        """float32 for float16 and bfloat16, what XLA:CPU does for convolutions: the
        compiled HLO of a half conv_general_dilated converts both operands to f32, convolves
        in f32 and rounds once (a float16 conv summing 2050 ones gives 2050; accumulated in
        float16 it would stall at 2048). jnp.sum/mean/var upcast half inputs to f32 as well
        (_upcast_f16_for_computation). Not so a strided or padded reduce_window add, which
        XLA:CPU's loop emitter accumulates in the half dtype (the same sum gives 2048):
        average and Lp pooling in half precision are then reported as 'widened', and so are
        sums the adapter's compositions round in between (a bias added after the conv, the
        gradient of jnp.pad's wrap/edge modes). tests/harness/test_impl_jax_lax.py pins
        both behaviours."""
        return "float32" if dtype in HALF_DTYPES else dtype

    def versions(self) -> dict[str, str]:
        import jaxlib

        return {"jax": str(self._jax.__version__), "jaxlib": str(jaxlib.__version__)}

    def supports(self, op: str, dtype: str) -> bool:
        return True  # jax has float64, float32, float16 and bfloat16 kernels for all of these

    @staticmethod
    def costs() -> dict[str, Any]:
        """Compile seconds per new configuration and seconds per call, with medians."""
        return {
            "compilations": len(COMPILE_SECONDS),
            "compile_median_s": float(np.median(COMPILE_SECONDS or [np.nan])),
            "compile_total_s": float(np.sum(COMPILE_SECONDS)),
            "calls": len(CALL_SECONDS),
            "call_median_s": float(np.median(CALL_SECONDS or [np.nan])),
            "call_total_s": float(np.sum(CALL_SECONDS)),
        }

    def _run(self, key: Any, function: Callable[..., Any], arguments: Sequence[Any]) -> Any:
        """Compile ``function`` for ``key`` once (timed), then call it (timed)."""
        jax = self._jax
        inputs = [None if a is None else jax.numpy.asarray(a) for a in arguments]
        compiled = self._compiled.get(key)
        if compiled is None:
            started = time.perf_counter()
            compiled = jax.jit(function).lower(*inputs).compile()
            self.compile_seconds.append(time.perf_counter() - started)
            self._compiled[key] = compiled
        started = time.perf_counter()
        out = jax.block_until_ready(compiled(*inputs))
        self.call_seconds.append(time.perf_counter() - started)
        return out

    def _key(self, op: str, direction: str, arrays: Sequence[Any], config: Mapping) -> Any:
        shapes = tuple(None if a is None else (a.shape, str(a.dtype)) for a in arrays)
        return (op, direction, shapes, tuple(sorted((k, _frozen(v)) for k, v in config.items())))

    def _function(
        self,
        op: str,
        arrays: Sequence[np.ndarray | None],
        config: Mapping[str, Any],
        direction: str,
    ) -> Callable[..., Any]:
        reason = unsupported_reason(op, arrays, config, direction)
        if reason:
            raise Unsupported(reason)
        return functools.partial(self._ops[op], **{k: _frozen(v) for k, v in config.items()})

    def _forward(
        self, op: str, arrays: Sequence[np.ndarray | None], config: dict
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        function = self._function(op, arrays, config, "forward")
        out = self._run(self._key(op, "forward", arrays, config), function, arrays)
        if op == "batch_norm":  # (output, running_mean, running_var): update in place
            out, *running = out
            for array, updated in zip(arrays[1:3], running, strict=True):
                if array is not None and updated is not None:
                    np.copyto(array, np.asarray(updated))
        if isinstance(out, (tuple, list)):
            return tuple(np.array(o) for o in out)
        return np.array(out)

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
        jax = self._jax

        def gradients(grad: Any, *values: Any) -> tuple[Any, ...]:
            of_present = _first_output_of(function, values, present)
            _, pullback = jax.vjp(of_present, *(values[i] for i in present))
            return tuple(pullback(grad))

        key = self._key(op, "backward", (grad_output, *arrays), config)
        found = dict(zip(present, self._run(key, gradients, (grad_output, *arrays)), strict=True))
        return tuple(None if i not in found else np.array(found[i]) for i in wanted)

    def _present(self, op: str, arrays: Sequence[Any]) -> tuple[list[int], list[int]]:
        """The indices of the op's differentiable arrays, and of those given (not None)."""
        names = self._array_names[op]
        wanted = [i for i, n in enumerate(names) if n in self._differentiable[op]]
        return wanted, [i for i in wanted if i < len(arrays) and arrays[i] is not None]

    def _jvp(
        self,
        op: str,
        tangents: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> np.ndarray:
        """jax.jvp of the op's function in the given differentiable arrays, along their
        tangents (a tangent left out is zero): the tangent of the first output."""
        function = self._function(op, arrays, config, "backward")  # the gradient's rules
        wanted, present = self._present(op, arrays)
        by_index = dict(zip(wanted, tangents, strict=False))
        given = [
            by_index.get(i) if by_index.get(i) is not None else np.zeros_like(arrays[i])
            for i in present
        ]
        jax, count = self._jax, len(arrays)

        def tangent(*values: Any) -> Any:
            primal = values[:count]
            of_present = _first_output_of(function, primal, present)
            chosen = tuple(primal[i] for i in present)
            return jax.jvp(of_present, chosen, tuple(values[count:]))[1]

        key = self._key(op, "jvp", (*arrays, *given), config)
        return np.array(self._run(key, tangent, (*arrays, *given)))

    def _double_backward(
        self,
        op: str,
        grad_output: np.ndarray,
        grad_grads: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> tuple[np.ndarray | None, ...]:
        """The vjp of the vjp: the first gradients (jax.vjp of the op in its given
        differentiable arrays, at grad_output) pulled back along grad_grads, with respect to
        those arrays and grad_output (a grad_grad left out is zero)."""
        function = self._function(op, arrays, config, "backward")
        wanted, present = self._present(op, arrays)
        by_index = dict(zip(wanted, grad_grads, strict=False))
        cotangents = [
            by_index.get(i) if by_index.get(i) is not None else np.zeros_like(arrays[i])
            for i in present
        ]
        jax, count = self._jax, len(arrays)

        def second(grad: Any, *values: Any) -> tuple[Any, ...]:
            primal = values[:count]

            def first(grad_: Any, *chosen: Any) -> tuple[Any, ...]:
                of_present = _first_output_of(function, primal, present)
                return tuple(jax.vjp(of_present, *chosen)[1](grad_))

            chosen = tuple(primal[i] for i in present)
            _, pullback = jax.vjp(first, grad, *chosen)
            return tuple(pullback(tuple(values[count:])))

        key = self._key(op, "double_backward", (grad_output, *arrays, *cotangents), config)
        found = self._run(key, second, (grad_output, *arrays, *cotangents))
        by_present = dict(zip(present, found[1:], strict=True))
        return (
            *(None if i not in by_present else np.array(by_present[i]) for i in wanted),
            np.array(found[0]),
        )

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool | str,
        dtype: str = "float64",
    ) -> list[str]:
        """Lines computing ``got`` with jax alone: the op's jax function (its source and its
        helpers', verbatim), jitted; backward by jax.vjp, jvp by jax.jvp, the double backward
        by jax.vjp of the vjp (``backward``: False, True, 'jvp' or 'double_backward')."""
        function = self._ops[op]
        bound = dict(function.keywords) if isinstance(function, functools.partial) else {}
        base = function.func if isinstance(function, functools.partial) else function
        lines = [
            "import os",
            "",
            'os.environ.setdefault("JAX_PLATFORMS", "cpu")',
            "import functools",
            "import math",
            "from typing import Any",
            "",
            "import jax",
            "import jax.numpy as jnp",
            "from jax import lax",
            "",
            'jax.config.update("jax_enable_x64", True)',
            "",
            *function_sources([base], SOURCE_MODULES),
        ]
        cast = ".astype(jnp.bfloat16)" if dtype == "bfloat16" else ""
        lines.append(
            "as_numpy = lambda a: None if a is None else np.asarray(a.astype(jnp.float32) "
            "if a.dtype == jnp.bfloat16 else a)"
        )
        for name in (*array_names, "grad_output"):
            lines.append(f"{name} = None if {name} is None else jnp.asarray({name}){cast}")
        lines.append(f"function = functools.partial({base.__name__}, **config, **{bound!r})")
        arguments = ", ".join(array_names)
        if not backward:
            lines.append(f"out = jax.jit(function)({arguments})")
            lines.append("outputs = out if isinstance(out, tuple) else (out,)")
            lines.append(f"got = dict(zip({tuple(output_names)!r}, map(as_numpy, outputs)))")
            return lines
        differentiable = [n for n in array_names if n in self._differentiable[op]]
        lines += [
            f"arrays = dict(zip({tuple(array_names)!r}, ({arguments},)))",
            f"wrt = [n for n in {differentiable!r} if arrays[n] is not None]",
            "def of_wrt(*values):",
            "    out = function(**{**arrays, **dict(zip(wrt, values))})",
            "    return out[0] if isinstance(out, tuple) else out",
        ]
        return lines + _derivative_lines(backward, differentiable, output_names, cast)


def _first_output_of(
    function: Callable[..., Any], values: Sequence[Any], present: Sequence[int]
) -> Callable[..., Any]:
    """The op's first output as a function of its arrays at ``present`` alone (the others
    fixed at ``values``): what jax differentiates."""

    def of_present(*chosen: Any) -> Any:
        full = list(values)
        for i, value in zip(present, chosen, strict=True):
            full[i] = value
        out = function(*full)
        return out[0] if isinstance(out, (tuple, list)) else out

    return of_present


def _derivative_lines(
    direction: bool | str, differentiable: Sequence[str], output_names: Sequence[str], cast: str
) -> list[str]:
    """The repro's lines after of_wrt (the op in its given differentiable arrays)."""
    primals = "*(arrays[n] for n in wrt)"
    given = (
        f"[jnp.zeros_like(arrays[n]) if {{name}}[{differentiable!r}.index(n)] is None else "
        f"jnp.asarray({{name}}[{differentiable!r}.index(n)]){cast} for n in wrt]"
    )
    if direction == "jvp":
        return [
            f"along = tuple({given.format(name='tangents')})",
            f"_, tangent = jax.jvp(jax.jit(of_wrt), ({primals},), along)",
            f"got = {{{output_names[0]!r}: as_numpy(tangent)}}",
        ]
    if direction == "double_backward":
        return [
            "def first(grad, *values):",
            "    return tuple(jax.vjp(of_wrt, *values)[1](grad))",
            f"_, pullback = jax.vjp(jax.jit(first), grad_output, {primals})",
            f"second = pullback(tuple({given.format(name='grad_grads')}))",
            "found = dict(zip(wrt, second[1:]))",
            f"values = [as_numpy(found.get(n)) for n in {differentiable!r}]",
            f"got = dict(zip({tuple(output_names)!r}, (*values, as_numpy(second[0]))))",
        ]
    return [
        f"_, pullback = jax.vjp(jax.jit(of_wrt), {primals})",
        "found = dict(zip(wrt, pullback(grad_output)))",
        f"got = dict(zip({tuple(output_names)!r}, "
        f"(as_numpy(found.get(n)) for n in {differentiable!r})))",
    ]


def _write_costs() -> None:
    """$CONFORMANCE_JAX_COSTS: where to write this process's compile and call costs."""
    path = os.environ.get("CONFORMANCE_JAX_COSTS")
    if path and COMPILE_SECONDS:
        costs = JaxImplementation.costs()
        with open(f"{path}.{os.getpid()}", "w") as stream:
            json.dump(costs, stream, indent=2)


atexit.register(_write_costs)
