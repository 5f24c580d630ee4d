import pytest

pytest.importorskip("jax", reason="the jax adapter needs jax (pip install 'convconformance[jax]')")

# The jax adapter on fixed examples per op family, judged by the suite's own run_example
# against the reference; its Unsupported declarations; its accumulation claim; a repro.

import subprocess
import sys

import numpy as np

from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example
from conformance.implementations import Unsupported, load_implementation
from conformance.judge.check import run_example

IMPL = load_implementation("jax")
RNG = np.random.default_rng(7)


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


CASES = {
    "conv2d": (
        {"input": normal(2, 4, 5, 6), "weight": normal(4, 2, 3, 2), "bias": normal(4)},
        {"stride": 1, "padding": "same", "dilation": (1, 2), "groups": 2,
         "padding_mode": "reflect"},
    ),
    "conv1d": (
        {"input": normal(3, 7), "weight": normal(2, 3, 3), "bias": None},
        {"stride": 2, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "circular"},
    ),
    "conv_transpose2d": (
        {"input": normal(1, 4, 3, 2), "weight": normal(4, 3, 2, 3), "bias": normal(6)},
        {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2), "groups": 2,
         "dilation": (1, 2)},
    ),
    "max_pool2d": (
        {"input": normal(2, 2, 5, 6)},
        {"kernel_size": (3, 2), "stride": 2, "padding": (1, 1), "dilation": 1,
         "ceil_mode": True, "return_indices": False},
    ),
    "avg_pool2d": (
        {"input": normal(1, 2, 5, 7)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
         "count_include_pad": False, "divisor_override": None},
    ),
    "lp_pool1d": (
        {"input": normal(2, 3, 7)},
        {"norm_type": 3.0, "kernel_size": 2, "stride": None, "ceil_mode": True},
    ),
    "adaptive_avg_pool2d": ({"input": normal(2, 5, 7)}, {"output_size": (3, None)}),
    "adaptive_max_pool1d": (
        {"input": np.array([[[1.0, 3.0, 3.0, np.nan, 2.0, np.nan, 0.0]]])},
        {"output_size": 3, "return_indices": False},
    ),
    "unfold": (
        {"input": normal(2, 3, 5, 4)},
        {"kernel_size": (2, 3), "dilation": (2, 1), "padding": 1, "stride": (1, 2)},
    ),
    "fold": (
        {"input": normal(12, 8)},
        {"output_size": (4, 5), "kernel_size": 2, "dilation": 1, "padding": 0, "stride": (2, 1)},
    ),
    "batch_norm": (
        {"input": normal(3, 2, 4), "running_mean": normal(2), "running_var": normal(2) ** 2 + 0.1,
         "weight": normal(2), "bias": normal(2)},
        {"training": True, "momentum": 0.1, "eps": 1e-5},
    ),
}  # fmt: skip


@pytest.mark.parametrize("direction", ["forward", "backward", "jvp", "double_backward"])
@pytest.mark.parametrize("op", sorted(CASES))
def test_adapter_agrees_with_the_reference(op: str, direction: str) -> None:
    arrays, config = CASES[op]
    example = Example(arrays, config, "normal", 0)
    outcome = run_example(BY_NAME[op], IMPL, "float64", direction, example)
    assert outcome.row["verdict"] == "pass", outcome.report


def test_running_statistics_are_updated_in_place() -> None:
    arrays, config = CASES["batch_norm"]
    running_mean = arrays["running_mean"].copy()
    before = running_mean.copy()
    IMPL.batch_norm(arrays["input"], running_mean, arrays["running_var"].copy(), **config)
    expected = 0.9 * before + 0.1 * arrays["input"].mean(axis=(0, 2))
    # the point is that the caller's array changed; 1e-12 is float64 rounding of a 4-term mean,
    # far below the 0.1-scale change the update makes
    np.testing.assert_allclose(running_mean, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("op", "direction", "arrays", "config", "reason"),
    [
        ("max_pool1d", "forward", {"input": normal(1, 4)},
         {"kernel_size": 2, "return_indices": True}, "return_indices"),
        ("adaptive_max_pool1d", "forward", {"input": normal(1, 4)},
         {"output_size": 2, "return_indices": True}, "return_indices"),
        ("max_pool1d", "backward", {"input": normal(1, 6)},
         {"kernel_size": 2, "dilation": 2, "return_indices": False}, "window dilation"),
        ("conv1d", "forward", {"input": normal(1, 6), "weight": normal(1, 1, 2), "bias": None},
         {"stride": 2, "padding": "same"}, "'same'"),
        ("conv1d", "forward", {"input": normal(1, 6), "weight": normal(1, 1, 2), "bias": None},
         {"padding": -1}, "cropping"),
        ("avg_pool1d", "forward", {"input": normal(1, 6)},
         {"kernel_size": 2, "padding": 2}, "half the kernel"),
    ],
)  # fmt: skip
def test_declared_unsupported(
    op: str, direction: str, arrays: dict, config: dict, reason: str
) -> None:
    values = list(arrays.values())
    with pytest.raises(Unsupported, match=reason):
        if direction == "forward":
            getattr(IMPL, op)(*values, **config)
        else:
            getattr(IMPL, f"{op}_backward")(np.ones((1, 3)), *values, **config)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_accumulation(dtype: str) -> None:
    """A sum of n + 2 ones, n = 2**(mantissa bits + 1): accumulated in the half dtype it
    stalls at n (n + 1 rounds back to n); in float32 it is n + 2, which the half dtype holds.
    XLA:CPU converts a half convolution's operands to float32 (the declared accumulation), but
    a strided reduce_window (average pooling) adds in the half dtype itself: the campaign
    reports those pools as 'widened'. If XLA changes either, this test says so."""
    from conformance.catalogue.dtypes import numpy_dtype

    n = 2048 if dtype == "float16" else 256
    ones = np.ones((1, 1, n + 2), dtype=numpy_dtype(dtype))
    conv = IMPL.conv1d(ones, ones, None, stride=1, padding=0, dilation=1, groups=1)
    window_sum = IMPL.avg_pool2d(ones[None], kernel_size=(1, n + 2), divisor_override=1)
    assert IMPL.accumulation_dtype(dtype) == "float32"
    assert float(conv.ravel()[0]) == n + 2
    assert float(window_sum.ravel()[0]) == n


def test_repro_snippet_reproduces_the_unfold_finding() -> None:
    """unfold of an input holding inf: conv_general_dilated_patches multiplies every pixel by
    its one-hot kernel, so inf * 0 = NaN lands in the other entries of the same block
    (reports/findings/jax/conv-general-dilated-patches-nonfinite.md)."""
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 0] = np.inf
    config = {"kernel_size": 2, "dilation": 1, "padding": 0, "stride": 1}
    outcome = run_example(
        BY_NAME["unfold"], IMPL, "float64", "forward", Example({"input": x}, config, "specials", 0)
    )
    assert outcome.row["verdict"] == "fail"
    printed = subprocess.run(
        [sys.executable, "-c", outcome.row["repro"]], capture_output=True, text=True, timeout=120
    )
    assert printed.returncode == 1, printed.stderr
    assert "REPRODUCED: output[" in printed.stdout


@pytest.mark.parametrize("direction", ["jvp", "double_backward"])
def test_a_derivative_repro_reproduces_the_minus_inf_window(direction: str) -> None:
    """jax.jvp of max reduce_window at a -inf element picks the init value's zero tangent
    (reports/findings/jax/max-reduce-window-vjp-selects-wrong-element.md); the repro, in
    jax alone, says so and exits 1."""
    x = np.array([[[-np.inf], [2.0]]])
    config = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}
    config.update(ceil_mode=False, return_indices=False)
    example = Example({"input": x}, config, "specials", 0)
    outcome = run_example(BY_NAME["max_pool2d"], IMPL, "float64", direction, example)
    wrong = {"jvp": "tangent", "double_backward": "grad_grad_output"}[direction]
    assert outcome.row["verdict"] == "fail" and outcome.row["failed_outputs"] == wrong
    assert "got 0.0" in outcome.row["problem"]  # the init value's zero tangent
    printed = subprocess.run(
        [sys.executable, "-c", outcome.row["repro"]], capture_output=True, text=True, timeout=120
    )
    assert printed.returncode == 1, printed.stdout + printed.stderr
    assert "REPRODUCED:" in printed.stdout


def test_lp_pool_norm_type_1_second_derivative_is_zero_at_zero() -> None:
    """p = 1 is the window sum: its second derivative is 0 everywhere, x = 0 included. With
    lax.pow's float exponent (x ** 1.0) jax differentiates x ** 0.0 into 0 * x ** -1 = NaN at
    0; the adapter's integer power keeps torch's constant-exponent meaning."""
    x = np.array([[0.0, 1.0, -2.0, 0.0]])
    grad_output = np.ones((1, 2))
    grad_grads = [np.array([[1.0, -1.0, 2.0, 0.5]])]
    found = IMPL.lp_pool1d_double_backward(
        grad_output, grad_grads, x, norm_type=1.0, kernel_size=2, stride=2, ceil_mode=False
    )
    grad_input = found[0]
    np.testing.assert_array_equal(grad_input, np.zeros_like(x))
