"""One forward pass of a network, watched: its layers in execution order, each with its
shapes, the torch calls it made, the field of its output and, in a capture pass, the real
arguments of every catalogue op it called, the upstream gradient of each (set by a tensor
hook during the backward pass) and its output's activation statistics.

A layer is a call of a leaf module (one without children), named by its dotted path, or a
torch call made directly in a non-leaf module's forward (a residual sum, a concatenation, a
flatten), named by the module's path and the call. A module called twice gives two layers,
the second suffixed #2. Calls are seen by a TorchFunctionMode, modules by hooks.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from conformance.catalogue import BY_NAME
from conformance.catalogue.dtypes import numpy_dtype
from conformance.model import propagation
from conformance.model.fields import Field, input_field
from conformance.model.propagation import catalogue_name

# activations whose channel is dead when it is never above 0 anywhere in the batch
DEAD_WHEN_NOT_POSITIVE = frozenset({"relu", "relu_", "relu6", "ReLU", "ReLU6"})
# calls whose output the probe rescales to a maximum of 1 (sums of many inputs: without it,
# ones-weights grow past float64's range in deep networks, and 1/fan-in weights vanish)
RESCALED = frozenset(
    {"linear", "matmul", "mm", "bmm", "addmm", "interpolate"}
    | propagation.SUMS
    | propagation.CONCATENATIONS
    | propagation.REDUCTIONS
)

# attribute reads (x.data, x.T): passed through, their result not followed
IGNORED = frozenset({"__get__"})


class TracerBug(RuntimeError):
    """An error of the tracer itself, not of the model: shown with its traceback."""


class ModelError(Exception):
    """The model (or torch inside it) raised during the traced forward pass."""


@dataclass
class Call:
    """One torch call a layer made on the activations, with the knobs the counts need."""

    op: str
    shapes: dict[str, tuple[int, ...]]  # tensor arguments by parameter name
    knobs: dict[str, Any]  # the other arguments
    output_shape: tuple[int, ...]


@dataclass
class Check:
    """A catalogue op's real call inside the network: its arguments as arrays, in the
    catalogue entry's order, and the gradient of the loss with respect to its output."""

    op: str
    arrays: dict[str, np.ndarray | None]
    config: dict[str, Any]
    output_shape: tuple[int, ...]
    grad_output: np.ndarray | None = None


@dataclass
class Stats:
    """Per-channel statistics of a layer's output over the batch and the positions."""

    channels: int
    mean_min: float
    mean_max: float
    std_min: float
    std_max: float
    dead: int | None  # channels never above 0 (after a ReLU-like activation), else None


@dataclass
class Layer:
    index: int
    path: str
    kind: str
    module: torch.nn.Module | None
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...] | None = None
    ops: list[str] = field(default_factory=list)  # every torch call it made on activations
    calls: list[Call] = field(default_factory=list)  # those the counts describe
    checks: list[Check] = field(default_factory=list)
    field: Field | None = None
    field_note: str = ""
    stats: Stats | None = None
    response: np.ndarray | None = None  # probe: per impulse, which positions respond
    # learnable scalars first used here: a module's own on its first call, or the parameters
    # a torch call in a parent's forward takes (attention's projections, a position table)
    parameters: int = 0


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of a tensor (bfloat16 as ml_dtypes' bfloat16)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return np.array(tensor.view(torch.int16).numpy().view(numpy_dtype("bfloat16")))
    return np.array(tensor.numpy(), copy=True)


def _plain(value: Any) -> Any:
    """A config value as the catalogue's examples hold it: tuples, not lists or Sizes."""
    if isinstance(value, (list, tuple, torch.Size)):
        return tuple(_plain(v) for v in value)
    return value


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class Tracer(TorchFunctionMode):
    """Watches one forward pass of ``model``: ``with Tracer(model, dims) as t:
    model(t.start(x))``; then ``t.layers``. ``capture``: keep the catalogue ops' arguments,
    gradients, statistics and closed-form fields; ``probe``: rescale sums and record each
    layer's response (the fields are the capture pass's)."""

    def __init__(self, model: torch.nn.Module, dims: int, capture: bool, probe: bool) -> None:
        super().__init__()
        self.model, self.dims, self.capture, self.probe = model, dims, capture, probe
        self.layers: list[Layer] = []
        # id -> (a weak reference, so that a dead tensor's reused id is told apart and no
        # activation is kept alive for the tracer's sake; its field; why it has none)
        self._fields: dict[int, tuple[weakref.ref[torch.Tensor], Field | None, str]] = {}
        self._stack: list[str] = []
        self._current: Layer | None = None
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        self._counted: set[int] = set()  # parameters already attributed to a layer
        self._busy = False  # inside a hook: the tracer's own torch calls are not the model's
        self._leaves = {
            id(module) for _, module in model.named_modules() if not list(module.children())
        }

    # ---- module hooks

    def __enter__(self) -> Tracer:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._before(name, module)))
            self._handles.append(module.register_forward_hook(self._after(module)))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def start(self, x: torch.Tensor) -> torch.Tensor:
        """Register the network's input, whose every position sees itself."""
        self._fields[id(x)] = (weakref.ref(x), input_field(tuple(x.shape[2:])), "")
        return x

    def _name(self, path: str) -> str:
        self._counts[path] = self._counts.get(path, 0) + 1
        count = self._counts[path]
        return path if count == 1 else f"{path}#{count}"

    def _before(self, name: str, module: torch.nn.Module) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Sequence[Any]) -> None:
            self._busy = True
            try:
                self._stack.append(name)
                if id(module) in self._leaves:
                    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
                    path = self._name(name or "(model)")
                    kind = type(module).__name__
                    self._current = Layer(len(self.layers), path, kind, module, shapes)
                    self._current.parameters = self._first_use(module.parameters())
                    self.layers.append(self._current)
            except Exception as error:
                raise TracerBug(f"tracing {name!r}: {error}") from error
            finally:
                self._busy = False

        return hook

    def _after(self, module: torch.nn.Module) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Sequence[Any], output: Any) -> None:
            self._busy = True
            try:
                self._stack.pop()
                if id(module) in self._leaves and self._current is not None:
                    self._finish(self._current, output)
                    self._current = None
            except Exception as error:
                raise TracerBug(f"tracing {type(module).__name__}: {error}") from error
            finally:
                self._busy = False

        return hook

    # ---- torch calls

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        op = str(getattr(func, "__name__", ""))
        inputs = propagation.tensors(args, kwargs)
        if self._busy or op in IGNORED or not any(self._tracked(t)[0] for t in inputs):
            return func(*args, **kwargs)
        check = self._captured(op, args, kwargs) if self.capture else None
        try:
            output = func(*args, **kwargs)
        except Exception as error:
            raise ModelError(f"{op}: {error}") from error
        try:
            return self._record(op, args, kwargs, output, check)
        except Exception as error:
            raise TracerBug(f"tracing {op}: {error}") from error

    def _first_use(self, parameters: Any) -> int:
        """How many scalars of ``parameters`` no layer has counted yet; now counted."""
        fresh = [p for p in parameters if id(p) not in self._counted]
        self._counted.update(id(p) for p in fresh)
        return sum(int(p.numel()) for p in fresh)

    def _tracked(self, value: Any) -> tuple[bool, Field | None]:
        """Whether ``value`` derives from the network's input, and its field."""
        entry = self._fields.get(id(value))
        if entry is None or entry[0]() is not value:
            return False, None
        return True, entry[1]

    def _captured(self, op: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Check | None:
        """The call's arguments as arrays, before it runs (batch norm updates its running
        statistics in place)."""
        spec = BY_NAME.get(catalogue_name(op))
        if spec is None or not args or not self._tracked(args[0])[0]:
            return None
        try:
            bound = propagation.bind(op, args, kwargs)
        except TypeError:
            return None
        arrays = {
            name: None if bound.get(name) is None else as_array(bound[name])
            for name in spec.array_args
        }
        config = {k: _plain(v) for k, v in bound.items() if k not in spec.array_args}
        return Check(spec.name, arrays, config, ())

    def _record(
        self,
        op: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        output: Any,
        check: Check | None,
    ) -> Any:
        first = _first_tensor(output)
        if first is None:
            return output
        if self.probe and _rescales(op) and isinstance(output, torch.Tensor):
            output = first = self._rescaled(args, first)
        field: Field | None = None
        note = "fields are the capture pass's"
        if self.capture:
            field, note = propagation.output_field(
                op, args, kwargs, first, self._tracked, self.dims
            )
        self._fields[id(first)] = (weakref.ref(first), field, note)
        layer = self._current
        if layer is None and op not in propagation.TRANSPARENT:
            parent = self._stack[-1] if self._stack else ""
            path = self._name(f"{parent}.{op}" if parent else op)
            shapes = [tuple(t.shape) for t in propagation.tensors(args, kwargs)]
            layer = Layer(len(self.layers), path, op, None, shapes)
            used = propagation.tensors(args, kwargs)
            layer.parameters = self._first_use(t for t in used if isinstance(t, torch.nn.Parameter))
            self.layers.append(layer)
            layer.ops.append(op)
            self._note_call(layer, op, args, kwargs, first)
            self._attach(layer, check, first)
            self._finish(layer, first)
            return output
        if layer is not None:
            layer.ops.append(op)
            self._note_call(layer, op, args, kwargs, first)
            self._attach(layer, check, first)
        return output

    def _rescaled(self, args: Sequence[Any], first: torch.Tensor) -> torch.Tensor:
        """Divide by the largest magnitude per sample: a positive factor, so that which
        positions are zero does not change."""
        if not first.is_floating_point() or first.ndim < 1:
            return first
        axes = tuple(range(1, first.ndim))
        scale = first.abs().amax(dim=axes, keepdim=True) if axes else first.abs()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        if args and first is args[0]:  # in place: the caller holds this very tensor
            return first.div_(scale)
        return first / scale

    def _note_call(
        self, layer: Layer, op: str, args: Sequence[Any], kwargs: dict[str, Any], first: Any
    ) -> None:
        name = catalogue_name(op)
        if name not in BY_NAME and name != "linear":
            return
        if name == "linear":
            bound = dict(zip(("input", "weight", "bias"), args, strict=False)) | kwargs
        else:
            try:
                bound = propagation.bind(op, args, kwargs)
            except TypeError:
                return
        shapes = {k: tuple(v.shape) for k, v in bound.items() if isinstance(v, torch.Tensor)}
        knobs = {k: _plain(v) for k, v in bound.items() if not isinstance(v, torch.Tensor)}
        knobs.update({k: None for k, v in bound.items() if v is None})
        layer.calls.append(Call(name, shapes, knobs, tuple(first.shape)))

    def _attach(self, layer: Layer, check: Check | None, first: torch.Tensor) -> None:
        if check is None:
            return
        check.output_shape = tuple(first.shape)
        layer.checks.append(check)
        if first.requires_grad:

            def keep(grad: torch.Tensor) -> None:
                check.grad_output = as_array(grad)

            first.register_hook(keep)

    def _finish(self, layer: Layer, output: Any) -> None:
        first = _first_tensor(output)
        if first is None:
            layer.field_note = "the layer returns no tensor"
            return
        layer.output_shape = tuple(first.shape)
        tracked, field = self._tracked(first)
        if tracked:
            layer.field, layer.field_note = field, self._fields[id(first)][2]
        else:
            layer.field_note = "output not derived from the input by calls the tracer sees"
        if self.capture and first.is_floating_point() and first.ndim >= 2:
            layer.stats = _statistics(first, layer)
        if self.probe:  # per sample: which positions respond in some channel
            nonzero = first.detach() != 0
            if first.ndim == self.dims + 2:
                layer.response = nonzero.any(dim=1).cpu().numpy()
            else:
                layer.response = nonzero.reshape(first.shape[0], -1).any(dim=1).cpu().numpy()


def _rescales(op: str) -> bool:
    return op in RESCALED or any(
        pattern.match(op)
        for pattern in (propagation.WINDOWED, propagation.TRANSPOSED, propagation.ADAPTIVE)
    )


def _statistics(output: torch.Tensor, layer: Layer) -> Stats:
    values = output.detach().to(torch.float64)
    axes = (0, *range(2, values.ndim))
    mean = values.mean(dim=axes)
    std = values.std(dim=axes, correction=0)
    last = layer.calls[-1].op if layer.calls else layer.kind
    dead = None
    if layer.kind in DEAD_WHEN_NOT_POSITIVE or last in DEAD_WHEN_NOT_POSITIVE:
        dead = int((values.amax(dim=axes) <= 0).sum())
    return Stats(
        int(values.shape[1]),
        float(mean.min()),
        float(mean.max()),
        float(std.min()),
        float(std.max()),
        dead,
    )
