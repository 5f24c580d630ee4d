"""Every argument torch rejects raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import reference

X2 = np.zeros((1, 2, 5, 5))
W2 = np.zeros((4, 2, 3, 3))
WT2 = np.zeros((2, 3, 3, 3))  # transposed: (in, out/groups, kh, kw)

CONV_CASES = [
    ({"stride": 0}, ValueError, "stride must be positive"),
    ({"stride": (1, -1)}, ValueError, "stride must be positive"),
    ({"dilation": 0}, ValueError, "dilation must be positive"),
    ({"padding": -1}, ValueError, "padding must be non-negative"),
    ({"padding": (1, 2, 3)}, ValueError, "padding must have 2 elements"),
    ({"padding": "full"}, ValueError, "padding must be 'same', 'valid' or ints"),
    ({"padding": 1.5}, TypeError, "padding must be an int"),
    ({"stride": True}, TypeError, "stride must be an int"),
    ({"groups": 0}, ValueError, "groups must be positive"),
    ({"groups": 3}, ValueError, "divisible by groups"),
    ({"padding": "same", "stride": 2}, ValueError, "padding='same' requires stride 1"),
    ({"padding_mode": "mirror"}, ValueError, "padding_mode must be one of"),
    ({"padding": 5, "padding_mode": "reflect"}, ValueError, "padding_mode='reflect'"),
    ({"padding": 6, "padding_mode": "circular"}, ValueError, "padding_mode='circular'"),
    ({"dilation": 3}, ValueError, "larger than the padded input size"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), CONV_CASES)
def test_conv2d_rejects(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        reference.conv2d(X2, W2, **kwargs)
    with pytest.raises(error, match=message):
        reference.conv2d_backward(np.zeros((1, 4, 3, 3)), X2, W2, **kwargs)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((np.zeros((2, 5, 5, 1, 1)), W2), ValueError, "input must be 3 or 4-dimensional"),
        ((X2, np.zeros((4, 2, 3))), ValueError, "weight must be 4-dimensional"),
        ((np.zeros((1, 3, 5, 5)), W2), ValueError, "input has 3 channels"),
        ((X2, W2, np.zeros(3)), ValueError, r"bias must have shape \(4,\)"),
        ((X2.astype(np.float32), W2), TypeError, "weight must have the same dtype as input"),
        ((X2.astype(np.int64), W2), TypeError, "input must have a floating dtype"),
        ((X2.tolist(), W2), TypeError, "input must be a numpy.ndarray"),
        ((np.zeros((1, 2, 0, 5)), W2), ValueError, "input's spatial size must be positive"),
        ((X2, np.zeros((4, 2, 0, 3))), ValueError, "weight's kernel size must be positive"),
    ],
)
def test_conv2d_rejects_arrays(args: tuple, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        reference.conv2d(*args)


def test_conv_backward_rejects_wrong_grad_output() -> None:
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        reference.conv2d_backward(np.zeros((1, 4, 2, 3)), X2, W2)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"output_padding": 1}, ValueError, "output_padding must be smaller than either"),
        ({"stride": 2, "output_padding": 2}, ValueError, "output_padding must be smaller"),
        ({"output_padding": -1}, ValueError, "output_padding must be non-negative"),
        ({"padding": 4}, ValueError, "output size .* is too small"),
        ({"padding": "same"}, TypeError, "padding must be an int"),
        ({"groups": 4}, ValueError, "divisible by groups"),
        ({"stride": 0}, ValueError, "stride must be positive"),
        ({"dilation": (1, 0)}, ValueError, "dilation must be positive"),
    ],
)
def test_conv_transpose2d_rejects(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        reference.conv_transpose2d(X2, WT2, **kwargs)


def test_conv_transpose2d_rejects_channel_mismatch() -> None:
    with pytest.raises(ValueError, match="input has 2 channels"):
        reference.conv_transpose2d(X2, np.zeros((3, 1, 3, 3)))


def test_unbatched_input_round_trips() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    np.testing.assert_array_equal(reference.conv2d(x, w), reference.conv2d(x[None], w)[0])
    grads = reference.conv2d_backward(np.ones((4, 3, 3)), x, w)
    assert grads[0].shape == x.shape and grads[2] is None


def test_reference_never_imports_torch() -> None:
    """Import the oracle in a fresh interpreter; nothing it validates may come along."""
    code = (
        "import sys, reference; "
        "bad = sorted({'torch', 'pandas', 'hypothesis', 'conformance'} & set(sys.modules)); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


P2 = np.zeros((1, 2, 5, 5))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: reference.max_pool2d(P2, 0), ValueError, "kernel_size must be positive"),
        (lambda: reference.max_pool2d(P2, 2, 0), ValueError, "stride must be positive"),
        (lambda: reference.max_pool2d(P2, 2, padding=2), ValueError, "at most half of kernel"),
        (lambda: reference.max_pool2d(P2, 2, padding=-1), ValueError, "non-negative"),
        (lambda: reference.max_pool2d(P2, 2, dilation=0), ValueError, "dilation must be positive"),
        (lambda: reference.max_pool2d(P2, 6), ValueError, "output size 0 is too small"),
        (lambda: reference.max_pool2d(P2, 2, ceil_mode=1), TypeError, "ceil_mode must be a bool"),
        (lambda: reference.max_pool1d(P2, 2), ValueError, "input must be 2 or 3-dimensional"),
        (lambda: reference.avg_pool2d(P2, 2, divisor_override=0), ValueError, "must not be zero"),
        (lambda: reference.avg_pool2d(P2, 2, divisor_override=1.5), TypeError, "divisor_override"),
        (lambda: reference.lp_pool2d(P2, 0, 2), ValueError, "norm_type must be positive"),
        (lambda: reference.lp_pool2d(P2, np.inf, 2), ValueError, "positive and finite"),
        (lambda: reference.adaptive_avg_pool2d(P2, -1), ValueError, "non-negative"),
        (lambda: reference.adaptive_max_pool2d(P2, (1, 2, 3)), ValueError, "2 elements"),
        (lambda: reference.adaptive_avg_pool2d(P2, 1.5), TypeError, "output_size"),
        (lambda: reference.unfold(np.zeros((1, 1, 2, 2, 2)), 2), ValueError, "3 or 4"),
        (lambda: reference.unfold(P2, 6), ValueError, "at least one"),
        (lambda: reference.fold(np.zeros((1, 5, 4)), (3, 3), 2), ValueError, "divisible"),
        (lambda: reference.fold(np.zeros((1, 4, 5)), (3, 3), 2), ValueError, "sliding blocks"),
        (
            lambda: reference.max_pool2d_backward(np.zeros((1, 2, 3, 3)), P2, 2),
            ValueError,
            "grad_output must have the output's shape",
        ),
    ],
)
def test_pooling_rejects(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_adaptive_output_size_zero_is_empty_as_in_torch() -> None:
    assert reference.adaptive_avg_pool1d(np.ones((1, 1, 3)), 0).shape == (1, 1, 0)


def test_a_one_element_tuple_stands_for_every_dimension_where_torch_repeats_it() -> None:
    """ATen's expand_param_if_needed: F.conv2d(x, w, stride=(2,)) is stride=2, and so for
    the pooling knobs; torch's unfold refuses it, and so does the reference."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    np.testing.assert_array_equal(
        reference.conv2d(x, w, stride=(2,), padding=[1], dilation=(1,)),
        reference.conv2d(x, w, stride=2, padding=1, dilation=1),
    )
    np.testing.assert_array_equal(
        reference.max_pool2d(x, (3,), (2,), (1,)), reference.max_pool2d(x, 3, 2, 1)
    )
    with pytest.raises(ValueError, match="kernel_size must have 2 elements"):
        reference.unfold(x, (2,))
    with pytest.raises(ValueError, match="stride must have 2 elements"):
        reference.conv2d(x, w, stride=(1, 1, 1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reference.conv2d(X2, W2, stride=(1, True)), "stride must hold ints"),
        (lambda: reference.conv2d(X2, W2, groups=True), "groups must be an int"),
        (lambda: reference.max_pool2d(P2, np.bool_(True)), "kernel_size must be an int"),
        (lambda: reference.adaptive_avg_pool2d(P2, True), "output_size must be an int"),
        (lambda: reference.conv_output_size(5, True), "kernel_size must be an int"),
        (lambda: reference.channel_statistics(P2, correction=True), "correction must be an int"),
        (lambda: reference.receptive_field([], dims=True), "dims must be a positive int"),
        (lambda: reference.numerical_gradient(sum, [X2, W2], X2, True), "wrt must be an int"),
    ],
    ids=["stride", "groups", "kernel", "output_size", "size", "correction", "dims", "wrt"],
)
def test_a_bool_is_never_a_size_a_count_or_an_index(call: object, message: str) -> None:
    """True is an int to Python, but stride=True is a slip: refused, as torch refuses it."""
    with pytest.raises(TypeError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reference.max_pool2d(P2, 2, return_indices=1), "return_indices must be a bool"),
        (lambda: reference.avg_pool2d(P2, 2, count_include_pad="no"), "count_include_pad must"),
        (lambda: reference.batch_norm(P2, None, None, training="yes"), "training must be"),  # type: ignore[arg-type]
        (lambda: reference.pool_output_size(5, 2, ceil_mode=None), "ceil_mode must be"),  # type: ignore[arg-type]
    ],
    ids=["return_indices", "count_include_pad", "training", "ceil_mode"],
)
def test_a_mode_takes_only_a_bool(call: object, message: str) -> None:
    """A truthy string ("no") would silently switch the mode on."""
    with pytest.raises(TypeError, match=message):
        call()  # type: ignore[operator]


def test_bytes_are_not_a_tuple_of_sizes() -> None:
    """b"\\x01\\x01" is a sequence of two ints to Python; it was taken as padding (1, 1)."""
    with pytest.raises(TypeError, match="padding must be an int or a tuple of 2 ints"):
        reference.conv2d(X2, W2, padding=b"\x01\x01")
    with pytest.raises(TypeError, match="output_size"):
        reference.adaptive_avg_pool2d(P2, b"\x02\x02")


# --- remembered plans: a call that passed its checks lends its geometry only to the same call


def test_a_remembered_plan_is_only_lent_to_a_call_its_checks_would_pass() -> None:
    """After a valid call, the same shapes with a knob that is equal in Python but not to a
    check (True for 1, 1.0 for 1), another dtype, or a bias of another shape still fail
    their checks; a list (not remembered) is checked each time."""
    reference.conv2d(X2, W2, stride=1, padding=1)
    reference.max_pool2d(X2, 2, stride=1)
    reference.conv_transpose2d(X2, np.zeros((2, 3, 3, 3)), stride=1)
    with pytest.raises(TypeError, match="stride must be an int"):
        reference.conv2d(X2, W2, stride=True, padding=1)
    with pytest.raises(TypeError, match="padding must be an int"):
        reference.conv2d(X2, W2, stride=1, padding=1.0)
    with pytest.raises(TypeError, match="weight must have the same dtype as input"):
        reference.conv2d(X2, W2.astype(np.float32), stride=1, padding=1)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        reference.conv2d(X2, W2, np.zeros(3), stride=1, padding=1)
    with pytest.raises(TypeError, match="stride must be an int"):
        reference.max_pool2d(X2, 2, stride=True)
    with pytest.raises(TypeError, match="stride must be an int"):
        reference.conv_transpose2d(X2, np.zeros((2, 3, 3, 3)), stride=True)
    with pytest.raises(ValueError, match="stride must be positive"):
        reference.conv2d(X2, W2, stride=[0], padding=1)
    np.testing.assert_array_equal(
        reference.conv2d(X2 + 1, W2 + 1, stride=[1], padding=1),
        reference.conv2d(X2 + 1, W2 + 1, stride=1, padding=1),
    )


def test_plan_keys_tell_apart_what_the_checks_tell_apart() -> None:
    from reference._arguments import plan_key

    x = np.zeros((1, 2, 5))
    assert plan_key((x,), (1,)) != plan_key((x,), (True,)) != plan_key((x,), (1.0,))
    assert plan_key((x,), ((1, 2),)) != plan_key((x,), ((1, True),))
    assert plan_key((x,), (1,)) != plan_key((x.astype(np.float32),), (1,))
    assert plan_key((x, None), (1,)) != plan_key((x, np.zeros(2)), (1,))
    # planned afresh: lists, NumPy scalars, non-contiguous or non-float arrays, array-likes
    assert plan_key((x,), ([1],)) is None
    assert plan_key((x,), (np.int64(1),)) is None
    assert plan_key((x[..., ::2],), (1,)) is None
    assert plan_key((x.astype(np.int64),), (1,)) is None
    assert plan_key(([0.0],), (1,)) is None
