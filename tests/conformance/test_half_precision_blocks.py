"""batch_norm, depthwise_separable_conv and residual_block in float16 and bfloat16.

Their bounds carry what torch does in a half dtype: each op's result stored in that dtype
before the next op reads it (rounding, underflow, overflow), batch norm's statistics stored in
it too. The fixture tests/harness/half_stored_blocks.py does exactly that in NumPy, so it must
pass them; a brute-force case shows torch's half batch norm is that arithmetic; and an
intermediate rounded coarser than the dtype must still fail.
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import reference
from conformance.catalogue import BY_NAME
from conformance.catalogue.dtypes import HALF_DTYPES
from conformance.catalogue.example import Example, fill
from conformance.implementations.torch_eager import TorchImplementation
from conformance.implementations.user_module import ModuleImplementation
from conformance.judge.check import run_example

OPS = ("batch_norm", "depthwise_separable_conv", "residual_block")
FIXTURE = "tests.harness.half_stored_blocks"
STORED = ModuleImplementation(FIXTURE, importlib.import_module(FIXTURE))


@pytest.mark.parametrize("op", OPS)
def test_half_dtypes_are_judged(op: str) -> None:
    assert set(HALF_DTYPES) <= set(BY_NAME[op].dtypes)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_stored_intermediates_pass_the_declared_bound(op: str, dtype: str, direction: str) -> None:
    """Exact steps, each result stored in the half dtype (subnormal hidden values of the wide
    kind included): within the float32-accumulation bound, not merely widened."""
    spec = BY_NAME[op]

    @settings(max_examples=40, database=None, suppress_health_check=list(HealthCheck))
    @given(example=spec.examples())
    def judged(example: Example) -> None:
        outcome = run_example(spec, STORED, dtype, direction, example)
        assert outcome.row["verdict"] == "pass", outcome.report

    judged()


def _offset_case() -> tuple[Example, np.ndarray]:
    """Two values per channel about 84 apart by 0.3: float16 rounds the mean by up to 0.03,
    a tenth of a standard deviation, and grad_weight cancels (sum g x_hat = 1.7 of 541)."""
    rng = np.random.default_rng(165)
    arrays: dict[str, np.ndarray | None] = {
        "input": fill((2, 3), "offset", rng),
        "running_mean": None,
        "running_var": None,
        "weight": fill((3,), "offset", rng),
        "bias": fill((3,), "offset", rng),
    }
    config = {"training": True, "momentum": 0.1, "eps": 1e-3}
    example = Example(arrays, config, "offset", 165)
    return example, example.grad_output((2, 3))


def _torch_batch_norm_grads(example: Example, grad: np.ndarray) -> list[np.ndarray]:
    tensors = {
        k: None if a is None else torch.from_numpy(a.astype(np.float16)).requires_grad_(True)
        for k, a in example.arrays.items()
        if k in ("input", "weight", "bias")
    }
    out = torch.nn.functional.batch_norm(
        tensors["input"], None, None, tensors["weight"], tensors["bias"], True, 0.1, 1e-3
    )
    out.backward(torch.from_numpy(grad.astype(np.float16)))
    return [t.grad.numpy() for t in tensors.values() if t is not None]


def test_torch_half_batch_norm_normalizes_with_half_statistics() -> None:
    """The brute-force case the storage terms rest on: torch's float16 gradients equal, bit for
    bit, float64 steps on the mean and 1/sqrt(var + eps) rounded to float16 (the fixture); the
    exact grad_input of 38.2 comes out -inf and grad_weight 61.4 for 1.74 - within the bound,
    which must then make no claim on grad_input's sign."""
    example, grad = _offset_case()
    got = _torch_batch_norm_grads(example, grad)
    half = {k: None if a is None else a.astype(np.float16) for k, a in example.arrays.items()}
    steps = STORED.batch_norm_backward(grad.astype(np.float16), *half.values(), True, 0.1, 1e-3)
    for torch_grad, stepped in zip(got, steps, strict=True):
        np.testing.assert_array_equal(torch_grad, stepped)
    exact = reference.batch_norm_backward(
        grad.astype(np.float16).astype(np.float64),
        *(None if a is None else a.astype(np.float64) for a in half.values()),
        True,
        0.1,
        1e-3,
    )
    assert np.isneginf(got[0][0, 0]) and exact[0][0, 0] == pytest.approx(38.19, abs=0.01)
    assert got[1][0] == pytest.approx(61.44, abs=0.01) and exact[1][0] == pytest.approx(1.739, 1e-3)
    outcome = run_example(
        BY_NAME["batch_norm"], TorchImplementation(), "float16", "backward", example
    )
    assert outcome.row["verdict"] == "pass", outcome.report


class _CoarseHidden:
    """The separable block with its hidden activation rounded to bfloat16 (8 bits) in a float16
    run: coarser than the tested dtype's storage, which the declared bound must reject (the
    looser bound of float16 arithmetic throughout may still hold it: widened)."""

    name = "coarse-hidden"

    def accumulation_dtype(self, dtype: str) -> str:
        return "float32"

    def depthwise_separable_conv(self, input: np.ndarray, *arrays: Any, **config: Any) -> Any:
        w_d, w_p, b_d, b_p = (None if a is None else a.astype(np.float64) for a in arrays)
        knobs = (config["stride"], config["padding"], config["dilation"], input.shape[-3])
        hidden = reference.conv2d(input.astype(np.float64), w_d, b_d, *knobs)
        coarse = hidden.astype(ml_dtypes.bfloat16).astype(np.float64)
        return reference.conv2d(coarse, w_p, b_p).astype(input.dtype)

    def repro_lines(self, *args: Any, **kwargs: Any) -> list[str]:
        return ["got = {}"]


def test_a_coarser_intermediate_fails_the_declared_bound() -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray | None] = {
        "input": rng.standard_normal((1, 2, 3, 3)),
        "depthwise_weight": rng.standard_normal((2, 1, 1, 1)),
        "pointwise_weight": rng.standard_normal((2, 2, 1, 1)),
        "depthwise_bias": None,
        "pointwise_bias": None,
    }
    example = Example(arrays, {"stride": 1, "padding": 0, "dilation": 1}, "normal", 0)
    outcome = run_example(
        BY_NAME["depthwise_separable_conv"], _CoarseHidden(), "float16", "forward", example
    )
    assert outcome.row["verdict"] in ("widened", "fail"), outcome.row
    assert "exceeds the bound" in (outcome.row.get("widened_problem") or outcome.row["problem"])
