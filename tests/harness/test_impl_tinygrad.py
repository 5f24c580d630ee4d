import pytest

pytest.importorskip(
    "tinygrad",
    reason="the tinygrad adapter needs tinygrad (pip install 'convconformance[tinygrad]')",
)

from conformance.implementations.tinygrad_tensor import compiler, native_bfloat16

if compiler() is None:
    pytest.skip(
        "tinygrad's CPU device builds its kernels with clang ($CC), which is not installed "
        "(Debian: apt-get install clang; clang 17 or newer for bfloat16)",
        allow_module_level=True,
    )

# The tinygrad adapter on fixed examples per op family, judged by the suite's own run_example
# against the reference; its Unsupported declarations; its accumulation claims; a repro.

import subprocess
import sys

import numpy as np

from conformance.catalogue import BY_NAME
from conformance.catalogue.dtypes import numpy_dtype
from conformance.catalogue.example import Example
from conformance.implementations import Unsupported, load_implementation
from conformance.judge.check import run_example

IMPL = load_implementation("tinygrad")
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
    "conv3d": (
        {"input": normal(1, 2, 3, 4, 5), "weight": normal(2, 2, 2, 1, 3), "bias": normal(2)},
        {"stride": (1, 2, 1), "padding": (1, 0, 2), "dilation": (1, 1, 2), "groups": 1,
         "padding_mode": "zeros"},
    ),
    "conv_transpose2d": (
        {"input": normal(1, 4, 3, 2), "weight": normal(4, 3, 2, 3), "bias": normal(6)},
        {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2), "groups": 2,
         "dilation": (1, 2)},
    ),
    "max_pool2d": (
        {"input": normal(2, 2, 5, 6)},
        {"kernel_size": (3, 2), "stride": 2, "padding": (1, 1), "dilation": 1,
         "ceil_mode": True, "return_indices": True},
    ),
    "max_pool1d": (
        {"input": normal(2, 9)},
        {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 3, "ceil_mode": False,
         "return_indices": False},
    ),
    "avg_pool2d": (
        {"input": normal(1, 2, 5, 7)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
         "count_include_pad": False, "divisor_override": None},
    ),
    "avg_pool3d": (
        {"input": normal(1, 1, 5, 4, 7)},
        {"kernel_size": (3, 2, 2), "stride": 2, "padding": (1, 1, 0), "ceil_mode": True,
         "count_include_pad": True, "divisor_override": None},
    ),
    "batch_norm": (
        {"input": normal(3, 2, 4), "running_mean": normal(2), "running_var": normal(2) ** 2 + 0.1,
         "weight": normal(2), "bias": normal(2)},
        {"training": True, "momentum": 0.1, "eps": 1e-5},
    ),
    "patch_embedding": (
        {"input": normal(1, 3, 4, 6), "weight": normal(5, 3, 2, 2), "bias": normal(5)}, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("op", sorted(CASES))
def test_adapter_agrees_with_the_reference(op: str, direction: str) -> None:
    arrays, config = CASES[op]
    example = Example(arrays, config, "normal", 0)
    outcome = run_example(BY_NAME[op], IMPL, "float64", direction, example)
    assert outcome.row["verdict"] == "pass", outcome.report


def test_bfloat16_hand_off_is_exact() -> None:
    """bfloat16 values go in and come back bit for bit (an identity: a 1x1 conv by 1)."""
    bfloat16 = numpy_dtype("bfloat16")
    bits = np.array([0x0001, 0x3F81, 0x7F7F, 0x8000, 0xC2F7, 0x0080], dtype=np.uint16)
    values = bits.view(bfloat16).reshape(1, 1, 6)
    out = IMPL.conv1d(values, np.ones((1, 1, 1), bfloat16), None)
    assert out.dtype == bfloat16
    np.testing.assert_array_equal(out.view(np.uint16), values.view(np.uint16))


def test_versions_name_the_compiler_and_the_bfloat16_path() -> None:
    found = IMPL.versions()
    assert found["tinygrad"] == "0.14.0"
    assert "clang" in found["cc"]
    assert found["bfloat16"] == ("native" if native_bfloat16() else "float32 round trip")


def test_running_statistics_are_updated_in_place() -> None:
    arrays, config = CASES["batch_norm"]
    running_mean, running_var = arrays["running_mean"].copy(), arrays["running_var"].copy()
    mean_before, var_before = running_mean.copy(), running_var.copy()
    IMPL.batch_norm(arrays["input"], running_mean, running_var, **config)
    x = arrays["input"]
    # the point is that the caller's arrays changed, by momentum toward the batch's mean and
    # its UNBIASED variance (n = 12 values per channel); 1e-12 is float64 rounding of a
    # 12-term sum, far below the 0.1-scale change the update makes
    np.testing.assert_allclose(running_mean, 0.9 * mean_before + 0.1 * x.mean(axis=(0, 2)), 1e-12)
    unbiased = x.var(axis=(0, 2), ddof=1)  # same float64 rounding argument as the mean's
    np.testing.assert_allclose(running_var, 0.9 * var_before + 0.1 * unbiased, rtol=1e-12)


@pytest.mark.parametrize(
    ("op", "arrays", "config", "reason"),
    [
        ("avg_pool2d", {"input": normal(1, 1, 4, 4)},
         {"kernel_size": 2, "divisor_override": 3}, "divisor_override"),
        ("batch_norm", {"input": normal(3, 2), "running_mean": normal(2), "running_var": None},
         {"training": True}, "both or neither"),
        ("max_pool1d", {"input": np.array([[1.0, 1.0, 0.0]])},
         {"kernel_size": 2, "stride": 1}, "tie"),
    ],
)  # fmt: skip
def test_declared_unsupported(op: str, arrays: dict, config: dict, reason: str) -> None:
    values = list(arrays.values())
    with pytest.raises(Unsupported, match=reason):
        if op.startswith("max_pool"):  # ties make only the gradient unsupported
            getattr(IMPL, f"{op}_backward")(np.ones((1, 2)), *values, **config)
        else:
            getattr(IMPL, op)(*values, **config)


def test_half_precision_accumulation() -> None:
    """float16: a conv of 2050 ones is 2050 (float32 sums; in float16 it would stall at
    2048), and its products are exact ((1 + 2**-10)**2 - (1 + 2**-9) = 2**-20, a float16
    subnormal; a float16 product would round it to 0). bfloat16, native: each product is
    rounded to bfloat16 before the float32 sum ((1 + 2**-7)**2 - (1 + 2**-6) gives 0, not
    2**-14), which is why the adapter declares bfloat16 arithmetic for bfloat16; the float32
    round trip gives 2**-14. If tinygrad changes either, this test says so."""
    ones = np.ones((1, 1, 2050), dtype=np.float16)
    assert float(IMPL.conv1d(ones, ones, None).ravel()[0]) == 2050.0
    a = 1 + 2.0**-10
    x = np.array([[[a, 1 + 2.0**-9]]], dtype=np.float16)
    w = np.array([[[a, -1.0]]], dtype=np.float16)
    assert float(IMPL.conv1d(x, w, None).ravel()[0]) == 2.0**-20
    assert IMPL.accumulation_dtype("float16") == "float32"
    bfloat16 = numpy_dtype("bfloat16")
    b = 1 + 2.0**-7
    x = np.array([[[b, 1 + 2.0**-6]]], dtype=bfloat16)
    w = np.array([[[b, -1.0]]], dtype=bfloat16)
    got = float(IMPL.conv1d(x, w, None).ravel()[0])
    if native_bfloat16():
        assert (got, IMPL.accumulation_dtype("bfloat16")) == (0.0, "bfloat16")
    else:
        assert (got, IMPL.accumulation_dtype("bfloat16")) == (2.0**-14, "float32")


def test_repro_snippet_runs_with_tinygrad_alone() -> None:
    """A failing example's repro recomputes the call with NumPy and tinygrad only: here max
    pooling over windows holding NaN, where tinygrad drops the NaN of [1, NaN] and returns
    index 4, past the plane, for [0.5, NaN] (reports/findings/tinygrad/max-pool-nan-window.md)."""
    x = np.array([[[1.0, np.nan, 0.5, np.nan]]])
    config = {"kernel_size": 2, "stride": 2, "padding": 0, "dilation": 1, "ceil_mode": False,
              "return_indices": True}  # fmt: skip
    example = Example({"input": x}, config, "specials", 0)
    outcome = run_example(BY_NAME["max_pool1d"], IMPL, "float64", "forward", example)
    assert outcome.row["verdict"] == "fail"
    outcome.attach_repros()
    printed = subprocess.run(
        [sys.executable, "-c", outcome.row["repro"]], capture_output=True, text=True, timeout=300
    )
    assert printed.returncode == 1, printed.stdout + printed.stderr
    assert "REPRODUCED: output[" in printed.stdout
