"""The probe of every closed-form field: the real network, with controlled weights and
controlled inputs (the notebook's checklist: "test receptive field with gradients or
controlled inputs").

A float64 copy of the network in evaluation mode gets every weight 1 and every bias 0, its
batch norms running mean 0 and variance 1; the input is a batch of impulses, sample b all
zeros but for one position (every channel) set to 1. Every path then multiplies positive
numbers and nothing cancels, so a position of a layer's output responds (is non-zero in some
channel) exactly when the impulse lies in its field, clipping and the holes of dilation
included. Max pooling, which routes a gradient to one element per window, passes the impulse
on like every other layer: its maximum is non-zero exactly when its window holds a non-zero
element. (The network being positively homogeneous here, the response f(e_i) is also the
forward-mode gradient J(e_i) e_i; reverse-mode gradients of max pooling would show one
element per window, not the field.) Sums are divided by their largest magnitude per sample,
which changes no zero, so that ones-weights stay within float64's range however deep the
network. One batch of impulses checks every layer at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from conformance.model import fields
from conformance.model.trace import Layer, Tracer


def impulse_points(spatial: Sequence[int]) -> list[tuple[int, ...]]:
    """The corners, the centre and its neighbour of the other parity, and two off-centre
    points: the clipped edges, the interior, and both phases of a stride."""
    points = []
    for rule in (
        lambda n, a: 0,
        lambda n, a: n - 1,
        lambda n, a: n // 2,
        lambda n, a: n // 2 + (a + 1) % 2,
        lambda n, a: n // 3 if a % 2 == 0 else 2 * n // 3,
        lambda n, a: 1 if a % 2 == 0 else n - 2,
    ):
        point = tuple(min(max(rule(n, a), 0), n - 1) for a, n in enumerate(spatial))
        if point not in points:
            points.append(point)
    return points


def controlled(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The probe's weights for torch.func.functional_call: float64, 1 for every parameter
    but the biases (0), running means 0 and variances 1; the model's own stay untouched."""
    state: dict[str, torch.Tensor] = {}
    for name, parameter in model.named_parameters():
        value = 0.0 if name.rsplit(".", 1)[-1] == "bias" else 1.0
        # made whole once: a broadcast scalar would be copied by every pass's matmul
        state[name] = torch.full(parameter.shape, value, dtype=torch.float64)
    for name, buffer in model.named_buffers():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("running_mean", "running_var"):
            value = 0.0 if leaf == "running_mean" else 1.0
            state[name] = torch.tensor(value, dtype=torch.float64).expand(buffer.shape)
    return state


def run_probe(
    model: torch.nn.Module, input_shape: Sequence[int]
) -> tuple[list[Layer], list[tuple[int, ...]]]:
    """The layers of the probe (the model in evaluation mode, its training flags put back
    after), each with its response per impulse. One pass per impulse: a batch of them would
    multiply the peak memory of torch's float64 convolutions (their im2col buffers) by the
    number of impulses, for no gain in time."""
    spatial = tuple(input_shape[2:])
    points = impulse_points(spatial)
    training = {name: module.training for name, module in model.named_modules()}
    model.eval()
    passes = []
    try:
        state = controlled(model)
        for point in points:
            x = torch.zeros((1, input_shape[1], *spatial), dtype=torch.float64)
            x[(0, slice(None), *point)] = 1.0
            with torch.no_grad(), Tracer(model, len(spatial), capture=False, probe=True) as tracer:
                torch.func.functional_call(model, state, (tracer.start(x),))
            passes.append(tracer.layers)
    finally:
        for name, module in model.named_modules():
            module.training = training[name]
    layers = passes[0]
    for position, layer in enumerate(layers):
        found = [p[position] for p in passes if position < len(p)]
        same = all(f.path == layer.path and f.response is not None for f in found)
        if layer.response is not None and same and len(found) == len(passes):
            layer.response = np.concatenate([f.response for f in found if f.response is not None])
        else:
            layer.response = None  # the passes went different ways: nothing to compare
    return layers, points


def verdict(
    layer: Layer, probed: Layer | None, points: Sequence[tuple[int, ...]]
) -> tuple[str, bool]:
    """(what the probe says of ``layer``'s closed-form field, whether it disagrees)."""
    field = layer.field
    if field is None:
        return "no closed form", False
    if field.unprobed:
        return f"not probed: {field.unprobed}", False
    if probed is None or probed.path != layer.path or probed.response is None:
        return "not probed: the probe pass took another path through the network", False
    for sample, point in enumerate(points):
        predicted = fields.responses(field, point)
        observed = probed.response[sample]
        if field.collapsed:
            observed = np.asarray(observed.any())
        if predicted.shape != observed.shape:
            return f"MISMATCH: response of shape {observed.shape}, field of {predicted.shape}", True
        if not np.array_equal(predicted, observed):
            extra = np.argwhere(observed & ~predicted)
            missing = np.argwhere(predicted & ~observed)
            where = (
                f"{len(extra)} positions respond outside the field (first {tuple(extra[0])})"
                if len(extra)
                else f"{len(missing)} positions of the field do not respond "
                f"(first {tuple(missing[0])})"
            )
            return f"MISMATCH: impulse at {point}: {where}", True
    return f"match ({len(points)} impulses)", False
