"""torch in eager mode: torch.nn.functional on the CPU or on an accelerator, and the same
calls with channels-last memory format.

On CUDA, float32 convolutions may run in TF32 (``torch.backends.cudnn.allow_tf32``, on by
default): the adapter then declares the accumulation class ``tf32`` for float32, so such a
result is judged against TF32's bound and reported under the name ``torch[cuda,tf32]``, not
as a float32 failure.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.catalogue.dtypes import HALF_DTYPES, numpy_dtype
from conformance.implementations import OpsByName
from conformance.judge import repro

_BFLOAT16 = numpy_dtype("bfloat16")

# torch (2.13, CPU) has no float16 or bfloat16 kernel for these ("avg_pool3d_out_frame" not
# implemented for 'Half'); lp_pool3d is built on avg_pool3d. A test checks that it still
# refuses them, so a torch that gains them shows up.
TORCH_UNSUPPORTED = {(op, dtype) for op in ("avg_pool3d", "lp_pool3d") for dtype in HALF_DTYPES}

# Catalogue ops that torch has under another name or as a composition, and the same calls
# written out for repro snippets.
REPRO_CALLS = {
    "patch_embedding": "torch.nn.functional.conv2d(input, weight, bias, stride=weight.shape[-1])",
    "depthwise_separable_conv": (
        "torch.nn.functional.conv2d(torch.nn.functional.conv2d(input, depthwise_weight, "
        "depthwise_bias, groups=input.shape[-3], **config), pointwise_weight, pointwise_bias)"
    ),
    "channel_statistics": (
        "torch.var_mean(input, dim=(0, *range(2, input.ndim)), correction=config['correction'])"
    ),
    "residual_block": (
        "(lambda F, s, e: F.relu(F.batch_norm(F.conv2d(F.relu(F.batch_norm(F.conv2d(input, "
        "conv1_weight, None, s, 1), None, None, bn1_weight, bn1_bias, True, 0.0, e)), "
        "conv2_weight, None, 1, 1), None, None, bn2_weight, bn2_bias, True, 0.0, e) + (input "
        "if shortcut_weight is None else F.batch_norm(F.conv2d(input, shortcut_weight, None, "
        "s), None, None, shortcut_bn_weight, shortcut_bn_bias, True, 0.0, e))))"
        "(torch.nn.functional, config['stride'], config['eps'])"
    ),
    "conv_bn_relu": (
        "(lambda F, c: F.relu(F.batch_norm(c.reshape(-1, *c.shape[-3:]), running_mean, "
        "running_var, bn_weight, bn_bias, False, 0.0, config.get('eps', 1e-5))).reshape(c.shape))"
        "(torch.nn.functional, torch.nn.functional.conv2d(input, weight, bias, "
        "**{k: v for k, v in config.items() if k != 'eps'}))"
    ),
    "conv_max_pool": (
        "torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(input, weight, bias, "
        "**{k: v for k, v in config.items() if not k.startswith('pool_') and k != 'ceil_mode'}), "
        "config.get('pool_kernel_size', 2), config.get('pool_stride'), "
        "config.get('pool_padding', 0), config.get('pool_dilation', 1), "
        "config.get('ceil_mode', False))"
    ),
    "conv_transpose_conv": (
        "torch.nn.functional.conv2d(torch.nn.functional.conv_transpose2d(input, "
        "transpose_weight, transpose_bias, config.get('stride', 1), config.get('padding', 0), "
        "config.get('output_padding', 0), 1, config.get('dilation', 1)), conv_weight, conv_bias, "
        "1, config.get('conv_padding', 0))"
    ),
}


def _torch_equivalents(torch: Any) -> dict[str, Callable[..., Any]]:
    functional = torch.nn.functional

    def patch_embedding(input: Any, weight: Any, bias: Any = None) -> Any:
        return functional.conv2d(input, weight, bias, stride=weight.shape[-1])

    def depthwise_separable_conv(
        input: Any,
        depthwise_weight: Any,
        pointwise_weight: Any,
        depthwise_bias: Any = None,
        pointwise_bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
    ) -> Any:
        hidden = functional.conv2d(
            input, depthwise_weight, depthwise_bias, stride, padding, dilation, input.shape[-3]
        )
        return functional.conv2d(hidden, pointwise_weight, pointwise_bias)

    def channel_statistics(input: Any, correction: int = 1) -> Any:
        return torch.var_mean(input, dim=(0, *range(2, input.ndim)), correction=correction)

    def residual_block(
        input: Any,
        conv1_weight: Any,
        bn1_weight: Any,
        bn1_bias: Any,
        conv2_weight: Any,
        bn2_weight: Any,
        bn2_bias: Any,
        shortcut_weight: Any = None,
        shortcut_bn_weight: Any = None,
        shortcut_bn_bias: Any = None,
        stride: int = 1,
        eps: float = 1e-5,
    ) -> Any:
        def norm(x: Any, weight: Any, bias: Any) -> Any:
            return functional.batch_norm(x, None, None, weight, bias, True, 0.0, eps)

        hidden = functional.relu(
            norm(functional.conv2d(input, conv1_weight, None, stride, 1), bn1_weight, bn1_bias)
        )
        body = norm(functional.conv2d(hidden, conv2_weight, None, 1, 1), bn2_weight, bn2_bias)
        skip = input
        if shortcut_weight is not None:
            skip = norm(
                functional.conv2d(input, shortcut_weight, None, stride),
                shortcut_bn_weight,
                shortcut_bn_bias,
            )
        return functional.relu(body + skip)

    def conv_bn_relu(
        input: Any,
        weight: Any,
        bias: Any,
        running_mean: Any,
        running_var: Any,
        bn_weight: Any = None,
        bn_bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        eps: float = 1e-5,
    ) -> Any:
        """The composition, batch norm in eval mode: F.batch_norm takes (N, C, *), so an
        unbatched (C, H, W) convolution output gets its batch axis for it."""
        conv = functional.conv2d(input, weight, bias, stride, padding, dilation, groups)
        batched = conv.reshape(-1, *conv.shape[-3:])
        normalized = functional.batch_norm(
            batched, running_mean, running_var, bn_weight, bn_bias, False, 0.0, eps
        )
        return functional.relu(normalized).reshape(conv.shape)

    def conv_max_pool(
        input: Any,
        weight: Any,
        bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        pool_kernel_size: Any = 2,
        pool_stride: Any = None,
        pool_padding: Any = 0,
        pool_dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> Any:
        """The composition: conv2d, then max_pool2d of its output."""
        conv = functional.conv2d(input, weight, bias, stride, padding, dilation, groups)
        return functional.max_pool2d(
            conv, pool_kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode
        )

    def conv_transpose_conv(
        input: Any,
        transpose_weight: Any,
        conv_weight: Any,
        transpose_bias: Any = None,
        conv_bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        dilation: Any = 1,
        conv_padding: Any = 0,
    ) -> Any:
        """The composition: conv_transpose2d, then a stride-1 conv2d of its output."""
        upsampled = functional.conv_transpose2d(
            input, transpose_weight, transpose_bias, stride, padding, output_padding, 1, dilation
        )
        return functional.conv2d(upsampled, conv_weight, conv_bias, 1, conv_padding)

    return {
        "conv_bn_relu": conv_bn_relu,
        "conv_transpose_conv": conv_transpose_conv,
        "conv_max_pool": conv_max_pool,
        "residual_block": residual_block,
        "patch_embedding": patch_embedding,
        "depthwise_separable_conv": depthwise_separable_conv,
        "channel_statistics": channel_statistics,
    }


class TorchImplementation(OpsByName):
    """torch on the CPU: torch.nn.functional, or the nn module where only it has the feature."""

    name = "torch"
    derivatives = True  # forward-mode AD and double backward

    def __init__(self, device: str = "cpu", tf32: bool | None = None) -> None:
        import torch

        from conformance.catalogue import CATALOGUE

        # One intra-op thread unless CONFORMANCE_TORCH_THREADS says otherwise: with several,
        # some kernels (bfloat16 max pooling's backward) sum in a schedule-dependent order,
        # and a run's rows would then depend on how many workers share the cores.
        torch.set_num_threads(int(os.environ.get("CONFORMANCE_TORCH_THREADS", "1")))
        self._torch = torch
        self.device = _checked_device(torch, device)
        self._on_cpu = self.device.type == "cpu"  # asked for every tensor: 1 us a time
        self.tf32 = False
        if self.device.type == "cuda":
            if tf32 is None:  # the user's setting (torch's default: on for cuDNN convs)
                tf32 = bool(torch.backends.cudnn.allow_tf32)
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            self.tf32 = tf32
        if self.device.type != "cpu":
            self.name = f"{self.name}[{self.device.type}{',tf32' if self.tf32 else ''}]"
        equivalents = _torch_equivalents(torch)
        self._ops: dict[str, Callable[..., Any]] = {
            spec.name: equivalents.get(spec.name) or getattr(torch.nn.functional, spec.name)
            for spec in CATALOGUE
        }
        # which positional arrays get requires_grad (never running statistics: torch refuses
        # to update a leaf that requires grad in place)
        self._differentiable = {
            spec.name: tuple(name in spec.differentiable for name in spec.array_args)
            for spec in CATALOGUE
        }
        for dims in (1, 2, 3):  # padding modes other than zeros exist only in nn.ConvNd
            self._ops[f"conv{dims}d"] = self._conv(dims)

    def _conv(self, dims: int) -> Callable[..., Any]:
        torch = self._torch
        functional = getattr(torch.nn.functional, f"conv{dims}d")
        module_class = getattr(torch.nn, f"Conv{dims}d")

        # a module on the meta device per configuration, built once: building one runs its
        # parameter initialization (0.2 ms a call, a fifth of a small conv's check)
        @functools.lru_cache(maxsize=256)
        def module(*knobs: Any) -> Any:
            in_channels, out_channels, kernel, stride, padding, dilation, groups = knobs[:7]
            has_bias, padding_mode, dtype = knobs[7:]
            return module_class(
                in_channels, out_channels, kernel, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=has_bias, padding_mode=padding_mode,
                dtype=dtype, device="meta",
            )  # fmt: skip

        def conv(
            input: Any,
            weight: Any,
            bias: Any = None,
            stride: Any = 1,
            padding: Any = 0,
            dilation: Any = 1,
            groups: int = 1,
            padding_mode: str = "zeros",
        ) -> Any:
            if padding_mode == "zeros":
                return functional(input, weight, bias, stride, padding, dilation, groups)
            # Only nn.ConvNd pads in the other modes: run the real module on these tensors.
            knobs = (
                weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                _hashable(stride), _hashable(padding), _hashable(dilation), groups,
                bias is not None, padding_mode, weight.dtype,
            )  # fmt: skip
            try:
                built = module(*knobs)
            except TypeError:  # an unhashable knob (an invalid call): torch says what is wrong
                built = module.__wrapped__(*knobs)
            parameters = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
            return torch.func.functional_call(built, parameters, (input,))

        return conv

    def accumulation_dtype(self, dtype: str) -> str:
        """torch's CPU kernels accumulate float16 and bfloat16 in float32 (its "opmath"
        type); the campaign holds them to that declaration, and a failure says it was not
        kept."""
        if dtype == "float32" and self.tf32:
            return "tf32"
        return "float32" if dtype in HALF_DTYPES else dtype

    def warm_up(self) -> None:
        """What a process pays on its first calls (autograd's set-up, oneDNN's first
        primitives), paid once in the isolation's zygote before it forks the processes that
        make the calls. On one thread: a zygote must not start a thread pool its children
        would inherit broken."""
        torch = self._torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                x = torch.ones(1, 2, 5, 5, dtype=dtype, requires_grad=True)
                w = torch.ones(3, 2, 2, 2, dtype=dtype, requires_grad=True)
                y = torch.nn.functional.conv2d(x, w, stride=2)
                g = torch.ones_like(y, requires_grad=True)
                first = torch.autograd.grad(y, [x, w], g, create_graph=True)
                torch.autograd.grad(first, [x, w, g], [torch.ones_like(t) for t in first])
                with torch.autograd.forward_ad.dual_level():
                    dual = torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x))
                    torch.nn.functional.max_pool2d(dual, 2)
        finally:
            torch.set_num_threads(threads)

    def platform(self) -> dict[str, object]:
        """What decides torch's CPU kernels here (code_paths.torch_facts)."""
        from conformance.implementations.code_paths import torch_facts

        return torch_facts(self._torch) if self.device.type == "cpu" else {}

    def versions(self) -> dict[str, str]:
        found = {"torch": str(self._torch.__version__)}
        if self.device.type == "cuda":
            found["cuda"] = str(self._torch.version.cuda)
            found["device"] = str(self._torch.cuda.get_device_name(self.device))
        return found

    def supports(self, op: str, dtype: str) -> bool:
        return (self._split(op)[0], dtype) not in TORCH_UNSUPPORTED

    def _tensor(self, array: np.ndarray | None, grad: bool = False, op: str = "") -> Any:
        """A tensor copy of ``array`` (``op``: the catalogue op it is for)."""
        if array is None:
            return None
        copy = np.array(array, copy=True)
        # torch.from_numpy knows no bfloat16 (told by its dtype, 0.2 us: dtype.name, NumPy's
        # Python property, cost 5.7 us a tensor for float64)
        if copy.dtype == _BFLOAT16:
            tensor = self._torch.from_numpy(copy.view(np.int16)).view(self._torch.bfloat16)
        else:
            tensor = self._torch.from_numpy(copy)
        if not self._on_cpu:
            tensor = tensor.to(self.device)
        # (a new tensor requires no grad; .to() a CPU tensor, requires_grad_(False) and the
        # dtype comparison were 3 us of a float32 array's 4.8 us conversion, done several
        # times an example)
        return tensor.requires_grad_(True) if grad else tensor

    def _array(self, tensor: Any) -> np.ndarray:
        tensor = tensor.detach()
        if not tensor.is_cpu:
            tensor = tensor.cpu()
        if tensor.dtype == self._torch.bfloat16:
            return np.asarray(tensor.view(self._torch.int16).numpy().view(_BFLOAT16))
        return np.asarray(tensor.numpy())

    def _forward(
        self, op: str, arrays: Sequence[np.ndarray | None], config: dict
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        tensors = [self._tensor(a, op=op) for a in arrays]
        with self._torch.no_grad():
            out = self._ops[op](*tensors, **config)
        for array, tensor in zip(arrays, tensors, strict=True):
            if array is not None and array.flags.writeable:  # in-place updates reach the caller
                np.copyto(array, self._array(tensor))
        if isinstance(out, tuple):
            return tuple(self._array(o) for o in out)
        return self._array(out)

    def _backward(
        self,
        op: str,
        grad_output: np.ndarray,
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> tuple[np.ndarray | None, ...]:
        wanted = self._differentiable.get(op, (True,) * len(arrays))
        tensors = [self._tensor(a, w, op) for a, w in zip(arrays, wanted, strict=False)]
        out = self._ops[op](*tensors, **config)
        (out[0] if isinstance(out, tuple) else out).backward(self._tensor(grad_output, op=op))
        return tuple(
            None
            if t is None
            else self._array(t.grad if t.grad is not None else self._torch.zeros_like(t))
            for t, w in zip(tensors, wanted, strict=False)
            if w
        )

    def _differentiable_tensors(
        self, op: str, arrays: Sequence[np.ndarray | None], grad: bool
    ) -> tuple[list[Any], list[Any]]:
        """Every array as a tensor, and the differentiable ones (None where absent)."""
        wanted = self._differentiable.get(op, (True,) * len(arrays))
        tensors = [self._tensor(a, grad and w, op) for a, w in zip(arrays, wanted, strict=False)]
        chosen = [t for t, w in zip(tensors, wanted, strict=False) if w]
        return tensors, chosen

    def _jvp(
        self,
        op: str,
        tangents: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> np.ndarray:
        """Forward-mode AD (torch.autograd.forward_ad): dual tensors in, the tangent of the
        first output out; running statistics stay plain tensors, updated as in a forward."""
        forward_ad = self._torch.autograd.forward_ad
        wanted = self._differentiable.get(op, (True,) * len(arrays))
        config = {k: v for k, v in config.items() if k != "return_indices"}
        with forward_ad.dual_level():
            tangent_of = iter(tangents)
            tensors = []
            for array, differentiable in zip(arrays, wanted, strict=False):
                tensor = self._tensor(array, op=op)
                if differentiable:
                    tangent = next(tangent_of)
                    if tensor is not None and tangent is not None:
                        tensor = forward_ad.make_dual(tensor, self._tensor(tangent, op=op))
                tensors.append(tensor)
            out = self._ops[op](*tensors, **config)
            first = out[0] if isinstance(out, tuple) else out
            tangent_out = forward_ad.unpack_dual(first).tangent
        if tangent_out is None:  # no dual input reached the output
            return self._array(self._torch.zeros_like(first))
        return self._array(tangent_out)

    def _double_backward(
        self,
        op: str,
        grad_output: np.ndarray,
        grad_grads: Sequence[np.ndarray | None],
        arrays: Sequence[np.ndarray | None],
        config: dict,
    ) -> tuple[np.ndarray | None, ...]:
        """torch.autograd.grad twice: the first with create_graph=True, the second of the
        first gradients against grad_grads, with respect to the arrays and grad_output."""
        torch = self._torch
        config = {k: v for k, v in config.items() if k != "return_indices"}
        tensors, chosen = self._differentiable_tensors(op, arrays, True)
        grad = self._tensor(grad_output, True, op)
        out = self._ops[op](*tensors, **config)
        first_out = out[0] if isinstance(out, tuple) else out
        present = [t for t in chosen if t is not None]
        first = torch.autograd.grad(first_out, present, grad, create_graph=True)
        cotangents = [
            self._tensor(v, op=op) for v, t in zip(grad_grads, chosen, strict=True) if t is not None
        ]
        second = torch.autograd.grad(
            first, [*present, grad], cotangents, allow_unused=True, materialize_grads=True
        )
        results = iter(second[:-1])
        return (
            *(None if t is None else self._array(next(results)) for t in chosen),
            self._array(second[-1]),
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
        """Lines computing ``got`` with torch exactly as this adapter calls it."""
        call = REPRO_CALLS.get(op, f"torch.nn.functional.{op}({', '.join(array_names)}, **config)")
        if "padding_mode" in config:  # F.convNd has no padding_mode: zeros is its only mode
            call = call.replace(
                "**config", "**{k: v for k, v in config.items() if k != 'padding_mode'}"
            )
        if op.startswith("conv") and config.get("padding_mode", "zeros") != "zeros":
            call = (
                f"torch.func.functional_call(torch.nn.Conv{op[-2]}d(weight.shape[1] * "
                "config.get('groups', 1), weight.shape[0], tuple(weight.shape[2:]), "
                "bias=bias is not None, dtype=weight.dtype, **config), "
                "{k: v for k, v in {'weight': weight, 'bias': bias}.items() if v is not None}, "
                "(input,))"
            )
        differentiable = self._differentiable.get(op)
        lines = repro.torch_lines(call, array_names, output_names, backward, differentiable, dtype)
        return self._code_path_lines() + lines

    def _code_path_lines(self) -> list[str]:
        """A code path's caps, set before torch is imported (they take effect only then)."""
        from conformance.implementations.code_paths import environment

        settings = environment(self.name) if "[" in self.name and self.device.type == "cpu" else {}
        if not settings:
            return []
        threads = settings.pop("CONFORMANCE_TORCH_THREADS", "1")
        lines = ["import os", "", f"os.environ.update({settings!r})  # the code path under test"]
        return [*lines, "import torch", "", f"torch.set_num_threads({threads})"]


def _checked_device(torch: Any, device: str) -> Any:
    """torch.device(device), refused in one line where torch cannot use it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device: {device!r} is not a torch device ({error})") from None
    available = {
        "cpu": lambda: True,
        "cuda": lambda: torch.cuda.is_available(),
        "mps": lambda: torch.backends.mps.is_available(),
    }
    if parsed.type not in available:
        raise ValueError(f"--device: {device!r}: choose cpu, cuda or mps")
    if not available[parsed.type]():
        raise ValueError(
            f"--device: {device!r} is not available to this torch ({torch.__version__})"
        )
    return parsed


class ChannelsLastImplementation(TorchImplementation):
    """torch with every 4-d array in channels_last (NHWC) memory format and every 5-d one in
    channels_last_3d: the same maths through torch's other kernels."""

    name = "torch-channels_last"

    def _tensor(self, array: np.ndarray | None, grad: bool = False, op: str = "") -> Any:
        tensor = super()._tensor(array, op=op)
        if tensor is None:
            return None
        # a 4-d array of a 3-d op is an unbatched (C, D, H, W) input, not NCHW
        if tensor.ndim == 4 and not op.endswith("3d"):
            tensor = tensor.contiguous(memory_format=self._torch.channels_last)
        elif tensor.ndim == 5:
            tensor = tensor.contiguous(memory_format=self._torch.channels_last_3d)
        return tensor.requires_grad_(grad)

    def repro_lines(
        self,
        op: str,
        config: Mapping[str, Any],
        array_names: Sequence[str],
        output_names: Sequence[str],
        backward: bool | str,
        dtype: str = "float64",
    ) -> list[str]:
        lines = super().repro_lines(op, config, array_names, output_names, backward, dtype)
        dims = (5,) if op.endswith("3d") else (4, 5)
        convert = [
            f"{name} = {name} if {name} is None or {name}.ndim not in {dims} else "
            f"{name}.detach().contiguous(memory_format=torch.channels_last if {name}.ndim == 4 "
            f"else torch.channels_last_3d).requires_grad_({name}.requires_grad)"
            for name in array_names
        ]
        at = next(i for i, line in enumerate(lines) if line.startswith("out = "))
        return [*lines[:at], *convert, *lines[at:]]


def _hashable(value: Any) -> Any:
    """A list knob as the tuple torch reads it as (a cache key)."""
    return tuple(value) if isinstance(value, list) else value
