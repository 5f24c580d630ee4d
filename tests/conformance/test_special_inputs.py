"""Inputs outside the campaign's strategies: an empty batch, arrays in any memory layout,
integer and float16 arrays, NaN and infinities through convolution, subnormal magnitudes,
and a call too big for the im2col budget. Each against torch or against the reference's own
contiguous answer; none may end in a NumPy traceback or a wrong shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from conformance.catalogue import CATALOGUE, OpSpec
from conformance.catalogue.example import Example
from conformance.implementations.torch_eager import TorchImplementation
from conformance.judge.check import regions_hit
from conformance.reporting.baseline import SHIPPED, load_baseline

TORCH = TorchImplementation()


BATCHED_RANK = {
    "unfold": 4,
    "fold": 3,
    "patch_embedding": 4,
    "depthwise_separable_conv": 4,
    "residual_block": 4,
    "conv_bn_relu": 4,
    "conv_max_pool": 4,
    "conv_transpose_conv": 4,
}


def _batched(spec: OpSpec, example: Example) -> bool:
    """Whether the example's input has a batch axis (N, ...) to empty."""
    x = example.arrays["input"]
    assert x is not None
    if spec.name in ("batch_norm", "channel_statistics"):
        return True  # (N, C, *) always
    if spec.name in BATCHED_RANK:
        return x.ndim == BATCHED_RANK[spec.name]
    dims = int(next(c for c in spec.name if c.isdigit()))  # conv2d, max_pool3d, ...
    return x.ndim == dims + 2


BASELINE = load_baseline(SHIPPED)


def _known(spec: OpSpec, example: Example) -> bool:
    """In a region where the baseline records a torch discrepancy: not this test's subject."""
    regions = ";".join(regions_hit(spec, example))
    return any(
        entry.matches({"op": spec.name, "implementation": "torch", "dtype": "float64",
                       "direction": direction, "regions": regions})
        for entry in BASELINE
        for direction in ("forward", "backward")
    )  # fmt: skip


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        result = call()
    except Exception as error:
        return "rejected", error
    return "ran", result


def _shapes(result: Any) -> list[tuple[int, ...] | None]:
    items = result if isinstance(result, tuple) else (result,)
    return [None if r is None else tuple(np.shape(r)) for r in items]


# torch's var_mean warns about the empty batch it is asked for: the call under test
@pytest.mark.filterwarnings("ignore:var_mean.*degrees of freedom is <= 0:UserWarning")
@pytest.mark.parametrize("spec", CATALOGUE, ids=[spec.name for spec in CATALOGUE])
@settings(max_examples=15, database=None)
@given(data=st.data())
def test_empty_batch_agrees_with_torch(spec: OpSpec, data: st.DataObject) -> None:
    """N = 0: both run and give the same (empty) shapes, or both refuse; the reference's
    refusal is a ValueError that says why."""
    example = data.draw(spec.examples())
    if not _batched(spec, example) or _known(spec, example):
        return
    arrays = dict(example.arrays)
    x = arrays["input"]
    assert x is not None
    arrays["input"] = np.zeros((0, *x.shape[1:]))
    config = dict(example.config)
    theirs = _outcome(lambda: getattr(TORCH, spec.name)(*arrays.values(), **config))
    ours = _outcome(lambda: spec.reference(*arrays.values(), **config))
    assert theirs[0] == ours[0], (theirs, ours)
    if ours[0] == "rejected":
        assert isinstance(ours[1], ValueError) and "input" in str(ours[1]), ours[1]
        return
    assert _shapes(ours[1]) == _shapes(theirs[1])
    if "backward" in spec.directions:
        output = ours[1][0] if isinstance(ours[1], tuple) else ours[1]
        grad = np.zeros(np.shape(output))
        gradients = spec.reference_backward(grad, *arrays.values(), **config)
        wanted = getattr(TORCH, f"{spec.name}_backward")(grad, *arrays.values(), **config)
        assert _shapes(tuple(gradients)) == _shapes(tuple(wanted))


LAYOUTS = {
    "fortran": lambda a: np.asfortranarray(a),
    "reversed": lambda a: a[..., ::-1].copy()[..., ::-1],  # negative strides, same values
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],  # every other element
    "transposed": lambda a: a if a.ndim < 2 else np.swapaxes(np.swapaxes(a, -1, -2).copy(), -1, -2),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "op", ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "unfold", "batch_norm"]
)
@settings(max_examples=10, database=None)
@given(data=st.data())
def test_memory_layout_does_not_change_the_answer(
    op: str, layout: str, data: st.DataObject
) -> None:
    """The same values in any layout (non-contiguous, negatively strided, Fortran order)
    give the bitwise-same result."""
    spec = next(s for s in CATALOGUE if s.name == op)
    example = data.draw(spec.examples())
    config = dict(example.config)
    contiguous = [None if a is None else a.copy() for a in example.arrays.values()]
    relaid = [None if a is None else LAYOUTS[layout](a.copy()) for a in example.arrays.values()]
    for original, moved in zip(contiguous, relaid, strict=True):
        if original is not None:
            assert np.array_equal(original, moved, equal_nan=True)
    want = spec.reference(*contiguous, **config)
    got = spec.reference(*relaid, **config)
    for w, g in zip(
        want if isinstance(want, tuple) else (want,),
        got if isinstance(got, tuple) else (got,),
        strict=True,
    ):
        assert np.array_equal(w, g, equal_nan=True)


def test_integer_arrays_are_refused_by_name() -> None:
    """The reference is a floating-point oracle: an integer input is a TypeError naming it
    (torch 2.13 runs int64 conv2d on the CPU; the reference does not follow it there)."""
    x = np.arange(12).reshape(1, 1, 3, 4)
    with pytest.raises(TypeError, match="input"):
        reference.conv2d(x, np.ones((1, 1, 2, 2)))
    with pytest.raises(TypeError, match="input"):
        reference.max_pool2d(x, 2)


def test_float16_arrays_stay_float16_like_torch() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    ours = reference.conv2d(x, w, padding=1)
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    assert ours.dtype == np.float16 and theirs.dtype == torch.float16
    assert ours.shape == tuple(theirs.shape)


def test_nan_and_infinities_flow_through_convolution_as_in_torch() -> None:
    """IEEE propagation: NaN and inf * 0 give NaN, inf + -inf gives NaN, inf stays inf,
    wherever a window holds them, in the same places as torch (float64)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(2, 3, 7, 7)).astype(np.float64)
    x[0, 0, 1, 1], x[0, 1, 4, 5], x[1, 2, 3, 3], x[1, 2, 3, 4] = np.nan, np.inf, np.inf, -np.inf
    w = rng.integers(-1, 2, size=(4, 3, 3, 3)).astype(np.float64)
    w[0, 0, 0, 0] = 0.0  # inf * 0
    for config in ({"padding": 1}, {"stride": 2}, {"dilation": 2, "padding": 2}):
        ours = reference.conv2d(x, w, **config)
        theirs = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **config)
        theirs = theirs.numpy()
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), config
        assert np.array_equal(np.isposinf(ours), np.isposinf(theirs)), config
        assert np.array_equal(np.isneginf(ours), np.isneginf(theirs)), config
        finite = np.isfinite(theirs)
        assert np.array_equal(ours[finite], theirs[finite]), config  # integer values: exact


def test_subnormal_results_are_not_flushed() -> None:
    """float32 products far below the normal range (1e-20 * 1e-20) come out subnormal in
    both, within a few units of the smallest subnormal: neither flushes them to zero."""
    x = np.full((1, 1, 4, 4), 1e-20, dtype=np.float32)
    w = np.full((1, 1, 2, 2), 1e-20, dtype=np.float32)
    ours = reference.conv2d(x, w)
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    exact = 4 * np.float64(np.float32(1e-20)) ** 2  # 4e-40: below float32's 1.2e-38
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    assert 0 < ours.min() and 0 < theirs.min()
    assert np.abs(ours.astype(np.float64) - exact).max() <= 4 * tiny
    assert np.abs(theirs.astype(np.float64) - exact).max() <= 4 * tiny


def test_a_call_over_the_im2col_budget_is_refused_before_allocating() -> None:
    """The im2col buffer of this call would be 4.6 GiB; with a 1 GiB budget the reference
    says so at once instead of allocating it."""
    x = np.zeros((1, 64, 200, 200), dtype=np.float32)
    w = np.zeros((64, 64, 15, 15), dtype=np.float32)
    reference.set_im2col_budget(2**30)
    try:
        with pytest.raises(ValueError, match=r"im2col buffer .* GiB, over the budget"):
            reference.conv2d(x, w, padding=7)
    finally:
        reference.set_im2col_budget(4 * 2**30)
    with pytest.raises(ValueError, match="budget"):
        reference.set_im2col_budget(0)


def test_the_dtypes_torch_is_excused_from_are_really_unsupported() -> None:
    """TORCH_UNSUPPORTED must stay true: a torch that gains these kernels gets tested."""
    from conformance.implementations.torch_eager import TORCH_UNSUPPORTED

    for op, dtype in sorted(TORCH_UNSUPPORTED):
        x = torch.ones(1, 1, 2, 2, 2, dtype=getattr(torch, dtype))
        call = getattr(torch.nn.functional, op)
        arguments = (2.0, 1) if op.startswith("lp_") else (1,)
        with pytest.raises(RuntimeError, match="not implemented"):
            call(x, *arguments)


class _IndexShifted:
    """The reference's max_pool2d with every index one higher when ``shift``."""

    def __init__(self, shift: int) -> None:
        self.shift = shift

    def max_pool2d(self, input: np.ndarray, **config: Any) -> Any:
        output, indices = reference.max_pool2d(input, **config)
        return output, indices + self.shift


def test_the_index_of_a_window_with_no_element_is_recorded_not_judged() -> None:
    from conformance.implementations.user_module import ModuleImplementation
    from conformance.judge.check import run_example

    def shifted(shift: int) -> Any:
        return ModuleImplementation("index-shifted", _IndexShifted(shift))

    spec = next(s for s in CATALOGUE if s.name == "max_pool2d")
    # a (2, 1) image, kernel (1, 2) with dilation 2 and padding 1: each window's taps fall at
    # -1 and 1 across the width of 1, both outside
    config: dict[str, Any] = {"kernel_size": (1, 2), "stride": (1, 1), "padding": (0, 1)}
    config.update(dilation=(1, 2), ceil_mode=False, return_indices=True)
    empty = Example({"input": np.array([[[[1.0], [2.0]]]])}, config, "normal", 0, {})
    torch_outcome = run_example(spec, TORCH, "float64", "forward", empty)
    assert torch_outcome.passed, torch_outcome.row["problem"]  # torch's index is out of range
    assert "indices: 2 of 2 elements not judged" in torch_outcome.row["not_judged"]
    assert run_example(spec, shifted(1), "float64", "forward", empty).passed
    # where windows have elements, every index is still compared bit for bit
    config.update(kernel_size=(1, 1), padding=(0, 0), dilation=(1, 1))
    full = Example({"input": np.array([[[[1.0], [2.0]]]])}, config, "normal", 0, {})
    wrong = run_example(spec, shifted(1), "float64", "forward", full)
    assert not wrong.passed and "indices" in wrong.row["failed_outputs"]
    assert "not_judged" not in wrong.row
