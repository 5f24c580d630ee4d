"""lp pooling's jvp and double backward bounds where a window's sum of x ** p is within its
rounding of 0: whether the implementation's root, and so every derivative that reads the
window, is a number is then its rounding's choice, and the suite makes no claim there (as the
forward's and backward's bounds decide). A thorough bfloat16 campaign (seed 14) met it: at
p = 3, torch's bfloat16 sum of one window was +0.030 where the exact one is -0.078, and its
double backward gave 0.515625 where the float64 oracle (and torch in float64) give NaN."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import reference
from conformance.catalogue import BY_NAME
from conformance.catalogue.example import Example, fill
from conformance.implementations.user_module import ModuleImplementation
from conformance.judge.check import run_example

SPEC = BY_NAME["lp_pool2d"]
CONFIG = {"norm_type": 3.0, "kernel_size": (3, 4), "stride": (1, 3), "ceil_mode": False}
SEED = 1743377965  # the campaign's shrunk example: input (1, 3, 14), values "normal"
# columns read by one window only: 0-2 by window 0, 10-12 by window 3 (kernel 4, stride 3)
ONLY_IN = {0: slice(0, 3), 3: slice(10, 13)}


def _example() -> Example:
    x = fill((1, 3, 14), "normal", np.random.default_rng(SEED))
    return Example({"input": x}, CONFIG, "normal", SEED)


def _exact_sums() -> list[tuple[Fraction, Fraction]]:
    """Each window's sum of x ** 3 and of |x| ** 3, x as rounded to bfloat16, in rationals."""
    x = _example().arrays["input"]
    assert x is not None
    rounded = x.astype(ml_dtypes.bfloat16).astype(np.float64)[0]
    windows = [rounded[:, 3 * w : 3 * w + 4].ravel() for w in range(4)]
    return [
        (sum(Fraction(float(t)) ** 3 for t in w), sum(abs(Fraction(float(t))) ** 3 for t in w))
        for w in windows
    ]


def test_the_campaign_example_has_a_window_within_its_rounding_of_zero() -> None:
    """Window 3's sum is -0.078 with a magnitude sum of 43: bfloat16's u = 2 ** -8 times that
    is 0.17, so its sign is rounding's; windows 0 and 1 (-8.6 of 16, -3.7 of 19) are certain."""
    (s0, m0), (s1, m1), _, (s3, m3) = _exact_sums()
    u = Fraction(1, 2**8)
    assert s3 < 0 < m3 * u - abs(s3)
    assert s0 < 0 and s1 < 0 and abs(s0) > 10 * u * m0 and abs(s1) > 10 * u * m1


class _Oracle:
    """The float64 oracle's own answers, stored in the tested dtype, with numbers in place of
    NaN in one window (its output and the input columns only it reads)."""

    name = "oracle-with-numbers"

    def __init__(self, window: int) -> None:
        self.window = window

    def accumulation_dtype(self, dtype: str) -> str:
        return "float32"

    def _filled(self, out: np.ndarray, index: Any, dtype: np.dtype) -> np.ndarray:
        out = out.copy()
        out[index] = np.where(np.isnan(out[index]), 1.0, out[index])
        return out.astype(dtype)

    def lp_pool2d_jvp(self, tangents: Any, input: np.ndarray, **config: Any) -> np.ndarray:
        (tangent,) = tangents
        with np.errstate(all="ignore"):
            x = input.astype(np.float64)
            out = reference.lp_pool2d_jvp([tangent.astype(np.float64)], x, **config)
        return self._filled(out, (..., self.window), input.dtype)

    def lp_pool2d_double_backward(
        self, grad_output: np.ndarray, grad_grads: Any, input: np.ndarray, **config: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        (v,) = grad_grads
        with np.errstate(all="ignore"):
            grad_input, grad_grad_output = reference.lp_pool2d_double_backward(
                grad_output.astype(np.float64),
                (v.astype(np.float64),),
                input.astype(np.float64),
                **config,
            )
        return (
            self._filled(grad_input, (..., ONLY_IN[self.window]), input.dtype),
            self._filled(grad_grad_output, (..., self.window), input.dtype),
        )


def _answering(window: int) -> ModuleImplementation:
    return ModuleImplementation(f"{__name__}:_Oracle", _Oracle(window))


@pytest.mark.parametrize("direction", ["jvp", "double_backward"])
def test_a_number_where_the_sum_may_have_crossed_zero_is_no_failure(direction: str) -> None:
    outcome = run_example(SPEC, _answering(3), "bfloat16", direction, _example())
    assert outcome.row["verdict"] == "pass", outcome.row.get("problem")


@pytest.mark.parametrize("direction", ["jvp", "double_backward"])
def test_a_number_where_the_sum_is_certainly_negative_still_fails(direction: str) -> None:
    outcome = run_example(SPEC, _answering(0), "bfloat16", direction, _example())
    assert outcome.row["verdict"] == "fail"
    assert "NaN mismatch" in outcome.row["problem"]


@pytest.mark.parametrize("direction", ["jvp", "double_backward"])
def test_torch_bfloat16_on_the_campaign_example(direction: str) -> None:
    """torch's numbers on window 3 (0.515625 at input (0, 0, 9) in the double backward, 43.5
    as window 3's tangent) are no failure; its NaN on windows 0 and 1 is still required."""
    pytest.importorskip("torch")
    from conformance.implementations import load_implementation

    outcome = run_example(SPEC, load_implementation("torch"), "bfloat16", direction, _example())
    assert outcome.row["verdict"] == "pass", outcome.row.get("problem")


def test_an_infinite_curvature_times_a_sum_within_its_rounding_of_zero_is_no_claim() -> None:
    """At x = 0 with p < 2 the double backward's x ** (p - 2) is inf, times the sum over the
    element's windows of g * S ** (1/p - 1): where that sum is within its error of 0 the
    product's sign, or NaN, is rounding's (found by the ci campaign: bfloat16 torch NaN,
    float32 +inf, the exact value -inf); every other element is still judged."""
    pytest.importorskip("torch")
    from conformance.implementations import load_implementation

    digits = (
        "301132122212233011313310331310103332110233123303323231300203"
        "012031300333310223311003332302133233233312232322202213232112"
    )
    x = np.array([float(d) for d in digits]).reshape(2, 2, 5, 6)
    config = {"norm_type": 1.5, "kernel_size": (2, 3), "stride": (1, 2), "ceil_mode": False}
    example = Example({"input": x}, config, "integers", 1885606907)
    spec = BY_NAME["lp_pool2d"]
    for dtype in ("float64", "float32", "bfloat16"):
        outcome = run_example(spec, load_implementation("torch"), dtype, "double_backward", example)
        assert outcome.row["verdict"] == "pass", (dtype, outcome.row.get("problem"))
        assert outcome.row["not_judged"].startswith("grad_input: ")  # 7 or 8 of 120
