"""Batch normalization, activation statistics and the blocks, against their definitions,
each other and central differences; no torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.strategies.blocks import (
    patch_examples,
    residual_examples,
    separable_examples,
)
from conformance.catalogue.strategies.normalization import batch_norm_examples
from reference import normalization
from tests.reference.kinks import away_from_kinks


def integers(example: Example, offset: int = 0) -> dict[str, np.ndarray | None]:
    rng = np.random.default_rng(example.seed + offset)
    return {
        k: None if a is None else rng.integers(-3, 4, a.shape).astype(np.float64)
        for k, a in example.arrays.items()
    }


@settings(max_examples=60)
@given(example=patch_examples())
def test_patch_embedding_is_a_stride_patch_convolution(example: Example) -> None:
    """Exact on integers: reshape + matmul and conv2d(stride=P) sum the same products."""
    arrays = integers(example)
    x, w, b = arrays["input"], arrays["weight"], arrays["bias"]
    assert x is not None and w is not None
    patch = w.shape[-1]
    np.testing.assert_array_equal(
        reference.patch_embedding(x, w, b), reference.conv2d(x, w, b, stride=patch)
    )
    grad = np.random.default_rng(1).integers(-3, 4, reference.patch_embedding(x, w, b).shape)
    grad = grad.astype(np.float64)
    ours = reference.patch_embedding_backward(grad, x, w, b)
    conv = reference.conv2d_backward(grad, x, w, b, stride=patch)
    for mine, theirs in zip(ours, conv, strict=True):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            np.testing.assert_array_equal(mine, theirs)


@settings(max_examples=40)
@given(example=separable_examples())
def test_depthwise_separable_is_two_convolutions(example: Example) -> None:
    arrays = integers(example)
    x = arrays["input"]
    assert x is not None
    config = example.config
    hidden = reference.conv2d(
        x,
        arrays["depthwise_weight"],
        arrays["depthwise_bias"],
        config["stride"],
        config["padding"],
        config["dilation"],
        x.shape[-3],
    )
    expected = reference.conv2d(hidden, arrays["pointwise_weight"], arrays["pointwise_bias"])
    got = reference.depthwise_separable_conv(*arrays.values(), **config)
    np.testing.assert_array_equal(got, expected)


def _small(example: Example) -> bool:
    return all(a is None or a.size <= 60 for a in example.arrays.values())


@settings(max_examples=15)
@given(example=separable_examples().filter(_small))
def test_depthwise_separable_backward_central_differences(example: Example) -> None:
    rng = np.random.default_rng(example.seed)
    args = [None if a is None else rng.standard_normal(a.shape) for a in example.arrays.values()]
    out = reference.depthwise_separable_conv(*args, **example.config)
    comparisons = reference.check_gradients(
        reference.depthwise_separable_conv,
        reference.depthwise_separable_conv_backward,
        args,
        rng.standard_normal(out.shape),
        differentiable=(0, 1, 2, 3, 4),
        kwargs=example.config,
    )
    assert comparisons and all(c.ok for c in comparisons), [c.max_abs_error for c in comparisons]


@settings(max_examples=25)
@given(example=batch_norm_examples().filter(_small))
def test_batch_norm_backward_central_differences(example: Example) -> None:
    """Training couples every element of a channel through mean and variance; eval does not.
    The running statistics are copied per call, so each evaluation starts from the same."""
    rng = np.random.default_rng(example.seed)
    # order-one data throughout: central differences' rounding error grows as u * |L| / h
    arrays = {
        k: None if a is None else rng.standard_normal(a.shape) for k, a in example.arrays.items()
    }
    if arrays["running_var"] is not None:
        arrays["running_var"] = rng.uniform(0.5, 2.0, arrays["running_var"].shape)
    running = (arrays["running_mean"], arrays["running_var"])

    def forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
        stats = [None if a is None else a.copy() for a in running]
        return reference.batch_norm(x, *stats, weight, bias, **example.config)

    def backward(
        grad: np.ndarray, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None
    ) -> tuple:
        return reference.batch_norm_backward(grad, x, *running, weight, bias, **example.config)

    args = [arrays["input"], arrays["weight"], arrays["bias"]]
    grad = rng.standard_normal(arrays["input"].shape)  # type: ignore[union-attr]
    comparisons = reference.check_gradients(forward, backward, args, grad, (0, 1, 2))
    assert all(c.ok for c in comparisons), [c.max_abs_error for c in comparisons]


def test_batch_norm_running_statistics_follow_the_definition() -> None:
    x = np.array([[[1.0, 3.0]], [[5.0, 7.0]]])  # one channel, n = 4: mean 4, biased var 5
    running_mean, running_var = np.array([1.0]), np.array([2.0])
    out = reference.batch_norm(x, running_mean, running_var, training=True, momentum=0.5, eps=0.0)
    # each side a handful of roundings (u = 1.1e-16), so within a few ulps: rtol 1e-15
    np.testing.assert_allclose(out.ravel(), (np.array([1, 3, 5, 7]) - 4) / np.sqrt(5), rtol=1e-15)
    # stored: (1 - 0.5) * old + 0.5 * new, the variance unbiased: 5 * 4 / 3
    np.testing.assert_allclose(running_mean, [0.5 * 1 + 0.5 * 4], rtol=1e-15)
    np.testing.assert_allclose(running_var, [0.5 * 2 + 0.5 * 20 / 3], rtol=1e-15)


def test_notebook_section_12_activation_statistics() -> None:
    acts = np.random.default_rng(42).normal(size=(8, 16, 14, 14))
    var, mean = reference.channel_statistics(acts, correction=0)
    # the notebook's definitions: mean and (biased, numpy's default) std over (0, 2, 3)
    # the same two-pass reductions as numpy's mean and std, in the same order: equal bits
    np.testing.assert_array_equal(mean, acts.mean(axis=(0, 2, 3)))
    np.testing.assert_array_equal(np.sqrt(var), acts.std(axis=(0, 2, 3)))
    unbiased, _ = reference.channel_statistics(acts, correction=1)
    n = 8 * 14 * 14
    # one division by n - 1 against a multiplication and a division: a few ulps, rtol 1e-15
    np.testing.assert_allclose(unbiased, var * n / (n - 1), rtol=1e-15)


def test_dead_channel_fraction() -> None:
    acts = np.maximum(np.random.default_rng(0).normal(size=(4, 5, 3, 3)), 0)
    acts[:, [1, 3]] = 0.0  # two dead ReLU channels
    assert reference.dead_channel_fraction(acts) == 2 / 5
    assert reference.dead_channel_fraction(acts, threshold=100.0) == 1.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: reference.batch_norm(np.zeros((1, 2, 1)), None, None, training=True),
            ValueError,
            "more than one value per channel",
        ),
        (
            lambda: reference.batch_norm(np.zeros((2, 2)), None, None),
            ValueError,
            "must be given in evaluation mode",
        ),
        (
            lambda: reference.batch_norm(np.zeros((2, 2)), np.zeros(3), np.ones(3)),
            ValueError,
            r"running_mean must have shape \(2,\)",
        ),
        (
            lambda: reference.batch_norm(np.zeros((2, 2)), np.zeros(2), np.ones(2), eps=-1.0),
            ValueError,
            "eps must be non-negative",
        ),
        (lambda: reference.channel_statistics(np.zeros(3)), ValueError, r"\(N, C, \*\)"),
        (
            lambda: reference.patch_embedding(np.zeros((1, 2, 2, 2)), np.zeros((3, 2, 3, 3))),
            ValueError,
            "smaller than the patch",
        ),
        (
            lambda: reference.patch_embedding(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 2, 1))),
            ValueError,
            "square patches",
        ),
    ],
)
def test_rejects(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


@settings(max_examples=10)
@given(example=residual_examples())
def test_residual_block_backward_central_differences(example: Example) -> None:
    rng = np.random.default_rng(example.seed)
    args = [None if a is None else rng.standard_normal(a.shape) for a in example.arrays.values()]
    away_from_kinks("residual_block", args, dict(example.config))
    out = reference.residual_block(*args, **example.config)
    comparisons = reference.check_gradients(
        reference.residual_block,
        reference.residual_block_backward,
        args,
        rng.standard_normal(out.shape),
        differentiable=tuple(range(len(args))),
        kwargs=example.config,
    )
    assert comparisons and all(c.ok for c in comparisons), [c.max_abs_error for c in comparisons]


def test_notebook_section_10_residual() -> None:
    """y = x + F(x): with conv2's weights zero, bn2 normalizes zeros to zero, so the body is
    bn2's bias; set it to the notebook's F. The block ends in a ReLU."""
    x_values, f_values = np.array([1.0, -0.5, 0.25]), np.array([-0.2, 0.1, 0.4])
    x = np.broadcast_to(x_values.reshape(1, 3, 1, 1), (2, 3, 1, 1)).copy()
    rng = np.random.default_rng(0)
    y = reference.residual_block(
        x,
        rng.standard_normal((3, 3, 3, 3)),
        np.ones(3),
        np.zeros(3),
        np.zeros((3, 3, 3, 3)),
        np.ones(3),
        f_values,
    )
    # notebook: x + F = [0.8, -0.4, 0.65]; the block's ReLU keeps 0.8 and 0.65, zeroes -0.4
    # one addition of two doubles each (and ReLU): the sum rounded once, within an ulp
    np.testing.assert_allclose(y[0, :, 0, 0], [0.8, 0.0, 0.65], rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 5, 7), (4, 3, 6, 5), (1, 2, 3, 4, 5), (0, 3, 4)])
def test_mean_over_is_np_mean_bit_for_bit(dtype: str, shape: tuple[int, ...]) -> None:
    """normalization.mean_over, the reference's fast channel mean, against np.mean itself:
    the same bits for every dtype, values far apart in magnitude, and an empty batch (NaN)."""
    rng = np.random.default_rng(len(shape))
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(dtype)
    axes = (0, *range(2, len(shape)))
    for keepdims in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty slice
            got = normalization.mean_over(values, axes, keepdims)
            want = values.mean(axis=axes, keepdims=keepdims)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got.view(np.uint8), np.asarray(want).view(np.uint8))
