"""The pooling family's reference against brute-force loops, identities and finite
differences, with no torch involved. Max pooling and adaptive max pooling, values and
indices, must equal the loops bit for bit (NaN-aware); so must sums of small integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.strategies.pool import (
    adaptive_examples,
    fold_examples,
    pool_examples,
    unfold_examples,
)
from reference import pool
from tests.reference import brute_force

DIMS = (1, 2, 3)


def per_dim(value: object, dims: int) -> list:
    return list(value) if isinstance(value, tuple) else [value] * dims  # type: ignore[call-overload]


def batched(x: np.ndarray, dims: int) -> np.ndarray:
    return x if x.ndim == dims + 2 else x[np.newaxis]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(
        np.all((a == b) & (np.signbit(a) == np.signbit(b)) | (np.isnan(a) & np.isnan(b)))
    )


def knobs(example: Example, dims: int) -> dict:
    config = example.config
    kernel = per_dim(config["kernel_size"], dims)
    stride = kernel if config.get("stride") is None else per_dim(config["stride"], dims)
    return {
        "kernel": kernel,
        "stride": stride,
        "padding": per_dim(config.get("padding", 0), dims),
        "dilation": per_dim(config.get("dilation", 1), dims),
    }


# the max's two ways (reference.pool.STACKED_MAX_OUTPUTS): every example takes each of them
MAX_WAYS = {"stacked": 2**62, "passes": 0}


@pytest.mark.parametrize("way", sorted(MAX_WAYS))
@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=60)
@given(data=st.data())
def test_max_pool_matches_brute_force(way: str, dims: int, data: st.DataObject) -> None:
    example = data.draw(pool_examples(dims, "max"))
    x = example.arrays["input"]
    assert x is not None
    config = dict(example.config, return_indices=True)
    kept = pool.STACKED_MAX_OUTPUTS
    pool.STACKED_MAX_OUTPUTS = MAX_WAYS[way]
    try:
        values, indices = getattr(reference, f"max_pool{dims}d")(x, **config)
    finally:
        pool.STACKED_MAX_OUTPUTS = kept
    k = knobs(example, dims)
    want_values, want_indices = brute_force.max_pool(
        batched(x, dims),
        k["kernel"],
        k["stride"],
        k["padding"],
        k["dilation"],
        config["ceil_mode"],
    )
    assert same_bits(batched(values, dims), want_values)
    np.testing.assert_array_equal(batched(indices, dims), want_indices)


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=60)
@given(data=st.data())
def test_avg_pool_matches_brute_force(dims: int, data: st.DataObject) -> None:
    example = data.draw(pool_examples(dims, "avg"))
    x = np.random.default_rng(example.seed).integers(-3, 4, example.arrays["input"].shape)
    x = x.astype(np.float64)
    got = getattr(reference, f"avg_pool{dims}d")(x, **example.config)
    k = knobs(example, dims)
    want = brute_force.avg_pool(
        batched(x, dims),
        k["kernel"],
        k["stride"],
        k["padding"],
        example.config["ceil_mode"],
        example.config["count_include_pad"],
        example.config.get("divisor_override"),
    )
    # integer sums are exact; one division each side, the same division: equal bits
    np.testing.assert_array_equal(batched(got, dims), want)


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=60)
@given(data=st.data())
def test_lp_pool_matches_brute_force(dims: int, data: st.DataObject) -> None:
    example = data.draw(pool_examples(dims, "lp"))
    x = np.abs(np.random.default_rng(example.seed).standard_normal(example.arrays["input"].shape))
    got = getattr(reference, f"lp_pool{dims}d")(x, **example.config)
    k = knobs(example, dims)
    want = brute_force.lp_pool(
        batched(x, dims),
        example.config["norm_type"],
        k["kernel"],
        k["stride"],
        example.config["ceil_mode"],
    )
    # sums of at most 27 positive terms, then a root: a few ulps apart at most
    np.testing.assert_allclose(batched(got, dims), want, rtol=1e-13, atol=0)


def test_lp_pool_partial_window_is_the_documented_sum() -> None:
    """ones(5), kernel 2, stride 2, ceil_mode: windows [0,1], [2,3], [4] -> sqrt 2, sqrt 2, 1."""
    got = reference.lp_pool1d(np.ones((1, 1, 5)), 2, 2, 2, ceil_mode=True)
    # a sum of two squares and a square root, each correctly rounded: within an ulp
    np.testing.assert_allclose(got.ravel(), [np.sqrt(2), np.sqrt(2), 1.0], rtol=1e-15)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("kind", ["avg", "max"])
@settings(max_examples=40)
@given(data=st.data())
def test_adaptive_matches_brute_force(dims: int, kind: str, data: st.DataObject) -> None:
    example = data.draw(adaptive_examples(dims, kind))
    x = example.arrays["input"]
    assert x is not None
    if kind == "avg":
        x = np.random.default_rng(example.seed).integers(-3, 4, x.shape).astype(np.float64)
    spatial = x.shape[-dims:]
    out = [
        n if o is None else o
        for n, o in zip(spatial, per_dim(example.config["output_size"], dims), strict=True)
    ]

    def reduce_avg(cells: list) -> tuple[float, int]:
        return sum(v for _, v in cells) / len(cells), 0

    def reduce_max(cells: list) -> tuple[float, int]:
        best, where = -np.inf, cells[0][0]
        for flat, value in cells:
            if value > best or np.isnan(value):
                best, where = value, flat
        return dict(cells)[where], where

    want = brute_force.adaptive_pool(
        batched(x, dims), out, reduce_max if kind == "max" else reduce_avg
    )
    if kind == "avg":
        got = batched(getattr(reference, f"adaptive_avg_pool{dims}d")(x, **example.config), dims)
        for index, (value, _) in want.items():
            assert got[index] == value
        return
    config = dict(example.config, return_indices=True)
    values, indices = getattr(reference, f"adaptive_max_pool{dims}d")(x, **config)
    values, indices = batched(values, dims), batched(indices, dims)
    for index, (value, where) in want.items():
        assert same_bits(np.array(values[index]), np.array(value)) and indices[index] == where


@settings(max_examples=60)
@given(example=unfold_examples())
def test_unfold_matches_brute_force_and_fold_is_its_adjoint(example: Example) -> None:
    x = example.arrays["input"]
    assert x is not None
    x = np.random.default_rng(example.seed).integers(-3, 4, x.shape).astype(np.float64)
    k = knobs(example, 2)
    columns = reference.unfold(x, **example.config)
    want = brute_force.unfold(batched(x, 2), k["kernel"], k["dilation"], k["padding"], k["stride"])
    np.testing.assert_array_equal(batched(columns, 1), want)
    y = np.random.default_rng(example.seed + 1).integers(-3, 4, columns.shape).astype(np.float64)
    folded = reference.fold(y, x.shape[-2:], **example.config)
    assert float(np.vdot(columns, y)) == float(np.vdot(x, folded))  # <unfold x, y> = <x, fold y>
    # fold(unfold(x)) = x * fold(unfold(ones))
    ones = np.ones_like(x)
    coverage = reference.fold(
        reference.unfold(ones, **example.config), x.shape[-2:], **example.config
    )
    round_trip = reference.fold(columns, x.shape[-2:], **example.config)
    np.testing.assert_array_equal(round_trip, x * coverage)


SMALL = 100


@pytest.mark.parametrize(
    ("op", "examples"),
    [(f"avg_pool{d}d", pool_examples(d, "avg")) for d in DIMS]
    + [(f"lp_pool{d}d", pool_examples(d, "lp")) for d in DIMS]
    + [(f"max_pool{d}d", pool_examples(d, "max")) for d in DIMS]
    + [(f"adaptive_avg_pool{d}d", adaptive_examples(d, "avg")) for d in DIMS]
    + [(f"adaptive_max_pool{d}d", adaptive_examples(d, "max")) for d in DIMS]
    + [("unfold", unfold_examples()), ("fold", fold_examples())],
)
@settings(max_examples=10)
@given(data=st.data())
def test_backward_against_central_differences(
    op: str, examples: st.SearchStrategy[Example], data: st.DataObject
) -> None:
    example = data.draw(examples.filter(lambda e: e.arrays["input"].size <= SMALL))
    forward = getattr(reference, op)
    rng = np.random.default_rng(example.seed)
    # distinct order-one values: max pooling is differentiable away from ties, and lp's
    # root away from zero sums (positive inputs)
    x = rng.permutation(example.arrays["input"].size).reshape(example.arrays["input"].shape)
    x = (x + 1.0) / x.size + rng.uniform(0, 1e-3, x.shape)
    config = dict(example.config)
    config.pop("return_indices", None)
    out = forward(x, **config)
    # a max-pool window with no element is the constant -inf: nothing to differentiate, and
    # -inf * 0 poisons the loss; the brute-force test covers those windows
    assume(bool(np.isfinite(out).all()))
    grad = rng.standard_normal(out.shape)
    [comparison] = reference.check_gradients(
        forward, getattr(reference, f"{op}_backward"), [x], grad, differentiable=(0,), kwargs=config
    )
    assert comparison.ok, comparison.max_abs_error


def test_notebook_section_5_pooling() -> None:
    x = np.array([[1, 3, 2, 0], [4, 6, 5, 1], [2, 1, 0, 2], [3, 4, 1, 5]], dtype=float)
    # by hand: the 2x2 blocks are [1 3; 4 6], [2 0; 5 1], [2 1; 3 4], [0 2; 1 5]
    np.testing.assert_array_equal(reference.max_pool2d(x[None], 2)[0], [[6, 5], [4, 5]])
    np.testing.assert_array_equal(
        reference.avg_pool2d(x[None], 2)[0], [[14 / 4, 8 / 4], [10 / 4, 8 / 4]]
    )


def test_notebook_section_8_im2col() -> None:
    x = np.arange(1, 10, dtype=float).reshape(1, 1, 3, 3)
    # columns are the four 2x2 patches, row-major: [1 2 4 5], [2 3 5 6], [4 5 7 8], [5 6 8 9]
    expected = np.array([[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]], dtype=float).T
    np.testing.assert_array_equal(reference.unfold(x, 2)[0], expected)


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_max_pool_output_shape_is_the_forwards_shape(dims: int, data: st.DataObject) -> None:
    """The shape a derivative's oracle takes instead of running the forward."""
    from reference.pool import max_pool_output_shape

    example = data.draw(pool_examples(dims, "max"))
    x = example.arrays["input"]
    forward = getattr(reference, f"max_pool{dims}d")(x, **example.config)
    values = forward[0] if isinstance(forward, tuple) else forward
    assert max_pool_output_shape(dims, x, **example.config) == values.shape


def test_max_pool_output_shape_refuses_what_the_forward_refuses() -> None:
    from reference.pool import max_pool_output_shape

    x = np.zeros((1, 2, 4, 4))
    for kwargs in ({"kernel_size": 2, "padding": 2}, {"kernel_size": 2, "return_indices": 1}):
        with pytest.raises((ValueError, TypeError)) as shape_error:
            max_pool_output_shape(2, x, **kwargs)
        with pytest.raises((ValueError, TypeError)) as forward_error:
            reference.max_pool2d(x, **kwargs)
        assert str(shape_error.value) == str(forward_error.value)


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_lp_window_spread_is_the_window_sums_adjoint(dims: int, data: st.DataObject) -> None:
    """The bound's spread of per-window values: lp pooling's backward at norm_type 1 bit for
    bit, and the adjoint of its window sums (<spread(v), x> = <v, sums(x)>, exact on small
    integers)."""
    from reference.pool import lp_window_spread

    example = data.draw(pool_examples(dims, "lp"))
    config = {k: v for k, v in example.config.items() if k != "norm_type"}
    rng = np.random.default_rng(example.seed)
    x = rng.integers(-4, 5, example.arrays["input"].shape).astype(np.float64)
    sums = getattr(reference, f"lp_pool{dims}d")(x, 1.0, **config)
    v = rng.integers(-4, 5, sums.shape).astype(np.float64)
    spread = lp_window_spread(dims, v, x, **config)
    (backward,) = getattr(reference, f"lp_pool{dims}d_backward")(v, x, 1.0, **config)
    assert same_bits(spread, backward)
    assert float(np.sum(spread * x)) == float(np.sum(v * sums))
    with pytest.raises(ValueError, match="per_window"):
        lp_window_spread(dims, v[..., :0], x, **config)
