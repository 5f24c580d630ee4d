"""Network arithmetic against real torch modules: parameter counts, output shapes, FLOPs and
receptive fields, each an exact comparison, each example recorded in the report.

Part of the campaign (``python -m conformance run`` collects this module beside
conformance.campaign.tests whenever torch is among the implementations and no --ops filter leaves
these checks out); the test suite collects it from tests/conformance/test_network_arithmetic.py.

A description (reference.layers) is drawn with a valid input shape; the torch module it describes is
built (conformance.campaign.torch_modules) and measured: sum(p.numel()), a forward pass,
torch.utils.flop_counter.FlopCounterMode, and the input gradient of one output position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import reference
from conformance.campaign.recorder import Recorder
from conformance.campaign.torch_modules import build
from conformance.catalogue.strategies.layers import any_layer, receptive_stacks
from conformance.judge.flop_counter import COUNTER, counter_prediction
from reference import layers
from reference.receptive_field import receptive_field

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def layer_kind(description: Any) -> str:
    """A name for the coverage table: the block a description builds, not its class."""
    if isinstance(description, layers.Residual):
        return "residual block"
    if isinstance(description, layers.Sequential):
        parts = [part for part in description.layers if isinstance(part, layers.Conv)]
        if (
            len(parts) == len(description.layers) == 2
            and parts[0].groups == parts[0].in_channels
            and parts[1].kernel() == (1,) * parts[1].dims
        ):
            return "depthwise-separable"
        return "stack"
    if isinstance(description, layers.Conv):
        if description.groups > 1:
            return "grouped conv"
        if description.stride == description.kernel_size and description.padding == 0:
            return "patch embedding"
        return "conv"
    if isinstance(description, layers.Pool):
        return f"{description.kind} pool"
    return type(description).__name__


def record(
    recorder: Recorder,
    op: str,
    direction: str,
    key: Any,
    passed: bool,
    problem: str,
    description: Any,
    known: str = "",
) -> None:
    verdict = "known" if known else ("pass" if passed else "fail")
    recorder.record(
        {
            "op": op,
            "family": "network arithmetic",
            "implementation": "torch",
            "dtype": "float32",
            "direction": direction,
            "layer": layer_kind(description),
            "description": repr(description),
            "regions": layer_kind(description),
            "example_key": repr(key),
            "verdict": verdict,
            "normalized_error": 0.0 if passed else np.inf,
            "bound_ratio": 0.0 if passed else np.inf,
            "problem": problem,
            "known_reason": known,
        }
    )


@given(drawn=any_layer)
def test_parameter_count_and_output_shape(
    drawn: tuple[Any, tuple[int, ...]], conformance_recorder: Recorder
) -> None:
    description, input_shape = drawn
    module = build(description, len(input_shape))
    counted = sum(p.numel() for p in module.parameters())
    ours = description.parameter_count()
    record(
        conformance_recorder,
        "parameter_count",
        "forward",
        drawn,
        counted == ours,
        f"reference {ours}, torch {counted}",
        description,
    )
    assert counted == ours, (description, ours, counted)
    with torch.no_grad():
        shape = tuple(module.eval()(torch.zeros(input_shape)).shape)
    expected = tuple(description.output_shape(input_shape))
    record(
        conformance_recorder,
        "output_shape",
        "forward",
        drawn,
        shape == expected,
        f"reference {expected}, torch {shape}",
        description,
    )
    assert shape == expected, (description, input_shape, expected, shape)


def empty_max_window(description: Any, input_shape: tuple[int, ...]) -> bool:
    """Whether a max pooling layer has a window holding no input element on this input (a
    dilated, padded window whose every tap lies outside it: the reference's index -1)."""
    if not isinstance(description, layers.Pool) or description.kind != "max":
        return False
    pool = getattr(reference, f"max_pool{description.dims}d")
    _, indices = pool(
        np.zeros(input_shape), description.kernel_size, description.stride,
        description.padding, description.dilation, description.ceil_mode, True,
    )  # fmt: skip
    return bool((indices < 0).any())


@given(drawn=any_layer)
def test_flops_against_flop_counter(
    drawn: tuple[Any, tuple[int, ...]], conformance_recorder: Recorder
) -> None:
    description, input_shape = drawn
    # torch's max-pool backward scatters through an empty window's out-of-range index and
    # corrupts the heap, aborting the process (reports/findings/torch/
    # max-pool-backward-empty-window-heap-corruption.md): this check, which runs torch in its
    # own process, leaves those layers to the max_pool entries, which judge them isolated
    assume(not empty_max_window(description, input_shape))
    module = build(description, len(input_shape)).train()
    x = torch.randn(input_shape, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        out = module(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        module(x).sum().backward()
    both = counter.get_total_flops()
    ours = description.flops(input_shape)
    predicted = counter_prediction(description, input_shape)
    for direction, got, want, torch_rule in (
        ("forward", forward, ours["forward"], predicted[0]),
        (
            "backward",
            both,
            ours["forward"] + ours["grad_input"] + ours["grad_weight"],
            predicted[1],
        ),
    ):
        explained = got != want and got == torch_rule
        record(
            conformance_recorder,
            "flops",
            direction,
            drawn,
            got == want,
            f"reference {want}, FlopCounterMode {got}",
            description,
            known=COUNTER if explained else "",
        )
        assert got == want or explained, (description, input_shape, direction, want, got)
    del out


@given(drawn=receptive_stacks(), data=st.data())
def test_receptive_field_by_gradients(
    drawn: tuple[list[Any], int], data: st.DataObject, conformance_recorder: Recorder
) -> None:
    """All weights 1 and a positive input, so no gradient cancels; output q's one-hot
    gradient reaches exactly the inputs of q's field when the field lies inside the input."""
    stack, dims = drawn
    (*_, last) = receptive_field(stack, dims)
    # the first output whose field starts inside the input, or a few after it
    index = [-(min(f.start, 0) // f.jump) + data.draw(st.integers(0, 3)) for f in last]
    size = [
        f.start + q * f.jump + f.size + data.draw(st.integers(0, 3))
        for f, q in zip(last, index, strict=True)
    ]
    description = layers.Sequential(tuple(stack))
    try:
        out_shape = description.output_shape((1, 1, *size))
    except ValueError:
        assume(False)
    assume(all(q < n for q, n in zip(index, out_shape[2:], strict=True)))
    module = build(description, dims + 2)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(1.0)
    x = torch.ones((1, 1, *size), dtype=torch.float64, requires_grad=True)
    out = module.double()(x)
    grad = torch.zeros_like(out)
    grad[(0, 0, *index)] = 1.0
    out.backward(grad)
    nonzero = np.argwhere(x.grad[0, 0].numpy() != 0)
    got = [(int(nonzero[:, a].min()), int(nonzero[:, a].max())) for a in range(dims)]
    want = []
    for f, q, n in zip(last, index, size, strict=True):
        lo, hi = f.span(q)
        want.append((max(lo, 0), min(hi, n - 1)))
    inside = all(
        f.span(q)[0] >= 0 and f.span(q)[1] < n for f, q, n in zip(last, index, size, strict=True)
    )
    passed = (
        got == want
        if inside
        else all(w[0] <= g[0] and g[1] <= w[1] for g, w in zip(got, want, strict=True))
    )
    record(
        conformance_recorder,
        "receptive_field",
        "backward",
        (stack, index, size),
        passed,
        f"reference {want}, gradient support {got}",
        description,
    )
    assert passed, (stack, index, size, want, got)


# which of ARITHMETIC_OPS each check records: --ops selects checks by these
test_parameter_count_and_output_shape.arithmetic_ops = ("parameter_count", "output_shape")  # type: ignore[attr-defined]
test_flops_against_flop_counter.arithmetic_ops = ("flops",)  # type: ignore[attr-defined]
test_receptive_field_by_gradients.arithmetic_ops = ("receptive_field",)  # type: ignore[attr-defined]
