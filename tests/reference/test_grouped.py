"""The blocked, threaded engine of large grouped and depthwise convolutions
(reference._grouped) against _windows' paths, which brute force checks in test_conv.py (where
the "blocked" layout also runs this engine on every drawn example): bit for bit whatever the
threads and blocks, inf and NaN where they belong, the dtypes it takes and those it leaves."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

import reference
from reference import _grouped


@contextlib.contextmanager
def engine(**settings: int) -> Iterator[None]:
    """Send every grouped conv through the engine (min_macs=0), with these settings."""
    saved = dict(_grouped.GROUPED)
    _grouped.GROUPED.update(min_macs=0, thread_min_macs=0, **settings)
    try:
        yield
    finally:
        _grouped.GROUPED.update(saved)


@contextlib.contextmanager
def windows_paths() -> Iterator[None]:
    saved = dict(_grouped.GROUPED)
    _grouped.GROUPED["min_macs"] = 2**62
    try:
        yield
    finally:
        _grouped.GROUPED.update(saved)


# (input shape, weight shape, config): 1-d, 2-d, 3-d; one, two or three channels per group,
# one or two outputs per group; strides, dilations, paddings and padding modes
CASES = [
    ((3, 4, 11), (4, 1, 3), dict(groups=4, padding=1)),
    ((2, 6, 13), (6, 3, 2), dict(groups=2, stride=3, dilation=2, padding=2)),
    ((2, 6, 9, 10), (12, 2, 3, 3), dict(groups=3, padding=1)),
    ((2, 4, 9, 8), (4, 1, 3, 2), dict(groups=4, stride=(2, 3), dilation=(1, 2), padding=1)),
    ((3, 6, 10, 7), (6, 2, 2, 3), dict(groups=3, stride=2, padding=(1, 0))),
    ((2, 4, 8, 9), (8, 1, 3, 3), dict(groups=4, padding=1, padding_mode="reflect")),
    ((1, 6, 5, 6, 7), (6, 1, 3, 2, 3), dict(groups=6, stride=(1, 2, 2), dilation=(2, 1, 1))),
    ((2, 4, 5, 4, 6), (4, 2, 2, 2, 2), dict(groups=2, padding=1, padding_mode="circular")),
    # one input channel per group, tap by tap: a channel multiplier of 2 with zero padding
    # (padded block by block) and a stride; 3-d, dilated, padded on one axis only
    ((2, 4, 9, 8), (8, 1, 3, 3), dict(groups=4, stride=2, padding=(2, 1))),
    ((2, 3, 4, 6, 5), (3, 1, 2, 3, 2), dict(groups=3, dilation=(1, 2, 1), padding=(0, 2, 0))),
    # padding past the kernel's reach: grad_input added tap by tap, not gathered
    ((2, 4, 6, 5), (4, 2, 2, 3), dict(groups=2, padding=(2, 1), dilation=(1, 2))),
    ((9, 7, 8), (6, 3, 3, 3), dict(groups=3, padding=1)),  # unbatched
    ((0, 4, 7, 7), (4, 1, 3, 3), dict(groups=4, padding=1)),  # empty batch
]


def conv_all(
    x: np.ndarray, weight: np.ndarray, grad_seed: int, config: dict
) -> tuple[np.ndarray, ...]:
    dims = weight.ndim - 2
    out = getattr(reference, f"conv{dims}d")(x, weight, **config)
    grad = np.random.default_rng(grad_seed).integers(-3, 4, out.shape).astype(x.dtype)
    grad_input, grad_weight, _ = getattr(reference, f"conv{dims}d_backward")(
        grad, x, weight, **config
    )
    return out, grad_input, grad_weight


def assert_same(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # NaN-aware: NaN where the other has NaN


def integer_case(case: tuple, seed: int, dtype: type = np.float64) -> tuple:
    x_shape, w_shape, config = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, x_shape).astype(dtype)
    weight = rng.integers(-3, 4, w_shape).astype(dtype)
    return x, weight, config


@pytest.mark.parametrize("case", CASES)
def test_the_engine_gives_the_windows_paths_sums(case: tuple) -> None:
    """Integer data: every sum exact, so the engine and _windows agree to the bit."""
    x, weight, config = integer_case(case, 1)
    with windows_paths():
        expected = conv_all(x, weight, 2, config)
    with engine():
        assert_same(conv_all(x, weight, 2, config), expected)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("panel_bytes", [1, 2**20])
def test_products_cut_into_short_runs_still_give_the_sums(case: tuple, panel_bytes: int) -> None:
    """Every product handed to BLAS a few columns at a time (the partial products summed),
    its columns filled one product at a time or many: integer data, exact sums."""
    x, weight, config = integer_case(case, 3)
    with windows_paths():
        expected = conv_all(x, weight, 4, config)
    with engine(gemm_macs=8, gemv_elements=3, panel_bytes=panel_bytes):
        assert_same(conv_all(x, weight, 4, config), expected)


@pytest.mark.parametrize(
    "config",
    [
        dict(groups=2, dilation=2, output_padding=1),  # past the reach: output padding
        dict(groups=2, padding=1),
        dict(groups=2, stride=2, output_padding=1),  # strided: added tap by tap
    ],
)
def test_a_transposed_conv_through_the_engine_gives_the_windows_paths_sums(config: dict) -> None:
    """A transposed conv is the adjoint of a conv: through the engine its forward is a
    correlation of the input padded past the reach (gathered at stride 1)."""
    rng = np.random.default_rng(21)
    x = rng.integers(-3, 4, (2, 4, 7, 6)).astype(np.float64)
    weight = rng.integers(-3, 4, (4, 3, 3, 2)).astype(np.float64)
    with windows_paths():
        expected = reference.conv_transpose2d(x, weight, **config)
    with engine():
        got = reference.conv_transpose2d(x, weight, **config)
    assert_same((got,), (expected,))


@pytest.mark.parametrize("case", CASES)
def test_threads_and_blocks_do_not_change_a_bit(case: tuple) -> None:
    """Random data (sums rounded): one thread with every group in one block, against two or
    three threads with one group a block; inf and NaN among the inputs."""
    x_shape, w_shape, config = case
    rng = np.random.default_rng(5)
    x, weight = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    if x.size:
        x.flat[rng.integers(x.size, size=2)] = [np.inf, np.nan]
    with engine(threads=1, block_bytes=2**30):
        expected = conv_all(x, weight, 3, config)
    for threads in (2, 3):
        with engine(threads=threads, block_bytes=1):
            assert_same(conv_all(x, weight, 3, config), expected)


@pytest.mark.parametrize("case", CASES[:10])
@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_special_values_land_where_the_windows_paths_put_them(
    case: tuple, where: str, value: float
) -> None:
    """inf * 0 is NaN only where the sum has that product: the wide columns' garbage zeros
    never reach a result (an inf weight sends grad_input, an inf input grad_weight, back to
    _windows' paths)."""
    x, weight, config = integer_case(case, 7)
    target = x if where == "input" else weight
    target.flat[np.random.default_rng(8).integers(target.size, size=2)] = value
    with windows_paths():
        expected = conv_all(x, weight, 9, config)
    with engine():
        assert_same(conv_all(x, weight, 9, config), expected)


@pytest.mark.parametrize("case", CASES[:5])
def test_float32_runs_in_the_engine_and_float16_keeps_its_path(case: tuple) -> None:
    for dtype in (np.float32, np.float16):
        x, weight, config = integer_case(case, 11, dtype)
        with windows_paths():
            expected = conv_all(x, weight, 12, config)
        with engine():
            assert_same(conv_all(x, weight, 12, config), expected)
    small = np.zeros((1, 2, 4), np.float16)
    assert not _grouped.use(small, small, 2, 2**40)
    assert _grouped.use(small.astype(np.float32), small.astype(np.float32), 2, 2**40)


def test_a_large_grouped_conv_takes_the_engine_and_a_dense_one_does_not() -> None:
    x = np.zeros((8, 64, 56, 56))
    assert _grouped.use(x, x, 64, 8 * 64 * 9 * 56 * 56)
    assert not _grouped.use(x, x, 1, 2**40)  # dense: _windows' GEMMs
    assert not _grouped.use(x, x, 2, 1000)  # a campaign's example


def test_set_threads_checks_its_argument() -> None:
    before = _grouped.GROUPED["threads"]
    try:
        assert reference.set_threads(3) == before  # the count it replaced
        assert _grouped.GROUPED["threads"] == 3
        assert reference.set_threads(4) == 3
        reference.set_threads(3)
        with pytest.raises(TypeError, match=r"count .* must be an int, got bool"):
            reference.set_threads(True)
        with pytest.raises(TypeError, match=r"count .* must be an int, got float"):
            reference.set_threads(2.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"count .* must be at least 1, got 0"):
            reference.set_threads(0)
        assert _grouped.GROUPED["threads"] == 3
    finally:
        _grouped.GROUPED["threads"] = before


def test_the_environment_sets_the_default_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERENCE_THREADS", "3")
    assert _grouped._default_threads() == 3
    monkeypatch.setenv("REFERENCE_THREADS", "0")
    with pytest.raises(ValueError, match="REFERENCE_THREADS must be a positive integer"):
        _grouped._default_threads()
    monkeypatch.delenv("REFERENCE_THREADS")
    assert _grouped._default_threads() == 1  # one unless asked: see GROUPED


def test_the_pool_is_made_once() -> None:
    x, weight, config = integer_case(CASES[2], 13)
    with engine(threads=2):
        conv_all(x, weight, 14, config)
        pool = _grouped._POOL[0]
        conv_all(x, weight, 14, config)
        assert _grouped._POOL[0] is pool
