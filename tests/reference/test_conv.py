"""The conv family's reference against brute-force loops, adjoint identities and finite
differences, with no torch involved.

Integer-valued data in [-3, 3] makes every sum exact in float64, so the brute-force and
identity checks compare with equality, not a tolerance.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from conformance.catalogue.example import Example
from conformance.catalogue.strategies.conv import conv_examples, conv_transpose_examples
from reference import _grouped, _windows
from reference.shapes import same_padding
from tests.reference import brute_force

DIMS = (1, 2, 3)


def per_dim(value: object, dims: int) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value,) * dims  # type: ignore[arg-type]


def integer_arrays(example: Example) -> dict[str, np.ndarray | None]:
    rng = np.random.default_rng(example.seed)
    return {
        name: None if a is None else rng.integers(-3, 4, size=a.shape).astype(np.float64)
        for name, a in example.arrays.items()
    }


def batched(array: np.ndarray, dims: int) -> np.ndarray:
    return array if array.ndim == dims + 2 else array[np.newaxis]


def conv_pads(config: dict, weight: np.ndarray) -> list[tuple[int, int]]:
    dims = weight.ndim - 2
    if config["padding"] == "same":
        return list(same_padding(weight.shape[2:], per_dim(config["dilation"], dims)))
    if config["padding"] == "valid":
        return [(0, 0)] * dims
    return [(p, p) for p in per_dim(config["padding"], dims)]


@contextlib.contextmanager
def product_layout(layout: str) -> Iterator[None]:
    """Force correlate's NCHW-native product ("native"), its channel-major one
    ("channel-major"), for a grouped conv its tap-by-tap one ("per-tap") or the blocked,
    threaded engine of large grouped convs ("blocked": two threads, one-group blocks, tiny
    products) whatever the size, so that brute force checks each on every example."""
    saved = _windows.native_layout, _windows.per_tap, dict(_grouped.GROUPED)
    _windows.native_layout = lambda *arguments: layout == "native"
    _windows.per_tap = lambda groups, channels: layout == "per-tap" and groups > 1
    if layout == "blocked":
        _grouped.GROUPED.update(
            min_macs=0, thread_min_macs=0, threads=2, block_bytes=1, gemm_macs=64
        )
    try:
        yield
    finally:
        _windows.native_layout, _windows.per_tap = saved[:2]
        _grouped.GROUPED.update(saved[2])


@pytest.mark.parametrize("layout", ["native", "channel-major", "per-tap", "blocked"])
@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_matches_brute_force(dims: int, layout: str, data: st.DataObject) -> None:
    example = data.draw(conv_examples(dims))
    arrays = integer_arrays(example)
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    assert x is not None and weight is not None
    with product_layout(layout):
        got = reference.__dict__[f"conv{dims}d"](x, weight, bias, **example.config)
    config = example.config
    expected = brute_force.conv(
        batched(x, dims),
        weight,
        bias,
        per_dim(config["stride"], dims),
        conv_pads(dict(config), weight),
        per_dim(config["dilation"], dims),
        config["groups"],
        config["padding_mode"],
    )
    np.testing.assert_array_equal(batched(got, dims), expected)


@pytest.mark.parametrize("layout", ["channel-major", "blocked"])
@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_transpose_matches_brute_force(dims: int, layout: str, data: st.DataObject) -> None:
    example = data.draw(conv_transpose_examples(dims))
    arrays = integer_arrays(example)
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    assert x is not None and weight is not None
    config = example.config
    with product_layout(layout):
        got = reference.__dict__[f"conv_transpose{dims}d"](x, weight, bias, **config)
    expected = brute_force.conv_transpose(
        batched(x, dims),
        weight,
        bias,
        per_dim(config["stride"], dims),
        per_dim(config["padding"], dims),
        per_dim(config["output_padding"], dims),
        config["groups"],
        per_dim(config["dilation"], dims),
    )
    np.testing.assert_array_equal(batched(got, dims), expected)


def _linear_identities(op: str, example: Example) -> None:
    """For L = <f(x, W) - bias term, g>, linear in each argument: L = <x, dL/dx> = <W, dL/dW>,
    and <b, dL/db> = L(b) - L(0). Exact for integer data."""
    arrays = integer_arrays(example)
    forward = getattr(reference, op)
    backward = getattr(reference, f"{op}_backward")
    x, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    assert x is not None and weight is not None
    without_bias = forward(x, weight, None, **example.config)
    rng = np.random.default_rng(example.seed + 7)
    grad = rng.integers(-3, 4, size=without_bias.shape).astype(np.float64)
    loss = float(np.vdot(without_bias, grad))
    grad_input, grad_weight, grad_bias = backward(grad, x, weight, bias, **example.config)
    assert grad_input.shape == x.shape and grad_weight.shape == weight.shape
    assert float(np.vdot(x, grad_input)) == loss
    assert float(np.vdot(weight, grad_weight)) == loss
    if bias is None:
        assert grad_bias is None
    else:
        with_bias = float(np.vdot(forward(x, weight, bias, **example.config), grad))
        assert float(np.vdot(bias, grad_bias)) == with_bias - loss


@pytest.mark.parametrize("layout", ["channel-major", "per-tap", "blocked"])
@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_backward_linear_identities(dims: int, layout: str, data: st.DataObject) -> None:
    with product_layout(layout):
        _linear_identities(f"conv{dims}d", data.draw(conv_examples(dims)))


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=30)
@given(data=st.data())
def test_a_planned_convolution_is_the_functions_own(dims: int, data: st.DataObject) -> None:
    """reference.conv.Convolution gives conv{d}d (without bias) and each gradient of
    conv{d}d_backward bit for bit, planned once and called on other arrays of the same
    shapes (padding modes, groups and unbatched input included: the campaign's examples)."""
    from reference.conv import Convolution

    example = data.draw(conv_examples(dims))
    arrays = integer_arrays(example)
    x, weight = arrays["input"], arrays["weight"]
    assert x is not None and weight is not None
    planned = Convolution(x.shape, weight.shape, **example.config)
    rng = np.random.default_rng(example.seed + 3)
    for _ in range(2):  # the plan is reused: nothing of the first call's arrays stays in it
        x, weight = rng.standard_normal(x.shape), rng.standard_normal(weight.shape)
        out = getattr(reference, f"conv{dims}d")(x, weight, None, **example.config)
        assert planned.output_shape == out.shape
        np.testing.assert_array_equal(planned.forward(x, weight), out)
        grad = rng.standard_normal(out.shape)
        backward = getattr(reference, f"conv{dims}d_backward")
        grad_input, grad_weight, _ = backward(grad, x, weight, None, **example.config)
        np.testing.assert_array_equal(planned.grad_input(grad, weight), grad_input)
        np.testing.assert_array_equal(planned.grad_weight(grad, x), grad_weight)


def test_a_planned_convolution_names_what_does_not_fit_its_plan() -> None:
    from reference.conv import Convolution

    with pytest.raises(ValueError, match="weight_shape must have 3, 4 or 5 entries"):
        Convolution((1, 1, 2), (1, 1))
    with pytest.raises(ValueError, match="groups=2 expects 2"):  # conv's own checks, once
        Convolution((1, 1, 4), (2, 1, 3), groups=2)
    planned = Convolution((1, 2, 5), (3, 2, 2), stride=2)
    assert planned.output_shape == (1, 3, 2)
    x, weight = np.ones((1, 2, 5)), np.ones((3, 2, 2))
    with pytest.raises(ValueError, match=r"input must be an array of shape \(1, 2, 5\)"):
        planned.forward(np.ones((1, 2, 6)), weight)
    with pytest.raises(ValueError, match=r"weight must be .* dtype float64"):
        planned.forward(x, weight.astype(np.float32))
    with pytest.raises(ValueError, match=r"grad_output must be an array of shape \(1, 3, 2\)"):
        planned.grad_input(np.ones((1, 3, 3)), weight)
    with pytest.raises(ValueError, match=r"input must be .* got list"):
        planned.grad_weight(np.ones((1, 3, 2)), [[1.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["channel-major", "per-tap", "blocked"])
@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_transpose_backward_linear_identities(
    dims: int, layout: str, data: st.DataObject
) -> None:
    with product_layout(layout):
        _linear_identities(f"conv_transpose{dims}d", data.draw(conv_transpose_examples(dims)))


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=30)
@given(data=st.data())
def test_adjoint_conv_and_conv_transpose(dims: int, data: st.DataObject) -> None:
    """<conv(x, W), y> = <x, conv_transpose(y, W)>, with output_padding recovering x's size."""
    # zeros padding is the least restrictive mode, so every drawn example stays valid;
    # 'same' has no transposed counterpart in torch's API.
    example = data.draw(conv_examples(dims).filter(lambda e: e.config["padding"] != "same"))
    config = dict(example.config, padding_mode="zeros")
    if config["padding"] == "valid":
        config["padding"] = 0
    arrays = integer_arrays(example)
    x, weight = arrays["input"], arrays["weight"]
    assert x is not None and weight is not None
    y_shape = getattr(reference, f"conv{dims}d")(x, weight, **config).shape
    y = np.random.default_rng(example.seed + 3).integers(-3, 4, size=y_shape).astype(float)
    stride, dilation = per_dim(config["stride"], dims), per_dim(config["dilation"], dims)
    padding = per_dim(config["padding"], dims)
    kernel = weight.shape[2:]
    output_padding = tuple(
        size + 2 * p - ((o - 1) * s + d * (k - 1) + 1)
        for size, p, o, s, d, k in zip(
            x.shape[-dims:], padding, y_shape[-dims:], stride, dilation, kernel, strict=True
        )
    )
    # Sizes that output_padding < max(stride, dilation) cannot reach have no transposed call.
    assume(all(op < max(s, d) for op, s, d in zip(output_padding, stride, dilation, strict=True)))
    back = getattr(reference, f"conv_transpose{dims}d")(
        y, weight, None, stride, padding, output_padding, config["groups"], dilation
    )
    assert float(np.vdot(getattr(reference, f"conv{dims}d")(x, weight, **config), y)) == float(
        np.vdot(x, back)
    )


SMALL = 120  # elements per array, so that central differences stay cheap


def _small(example: Example) -> bool:
    return all(a is None or a.size <= SMALL for a in example.arrays.values())


@pytest.mark.parametrize(
    ("op", "examples"),
    [(f"conv{d}d", conv_examples(d)) for d in DIMS]
    + [(f"conv_transpose{d}d", conv_transpose_examples(d)) for d in DIMS],
)
@settings(max_examples=12)
@given(data=st.data())
def test_backward_against_central_differences(
    op: str, examples: st.SearchStrategy[Example], data: st.DataObject
) -> None:
    example = data.draw(examples.filter(_small))
    forward = getattr(reference, op)
    # Order-one data: central differences' rounding error is about u * |L| / eps, which the
    # checker's tolerances are derived for (the exact identities above cover all magnitudes).
    rng = np.random.default_rng(example.seed)
    args = [None if a is None else rng.standard_normal(a.shape) for a in example.arrays.values()]
    out_shape = forward(*args, **example.config).shape
    grad = rng.standard_normal(out_shape)
    comparisons = reference.check_gradients(
        forward,
        getattr(reference, f"{op}_backward"),
        args,
        grad,
        differentiable=(0, 1, 2),
        kwargs=example.config,
    )
    assert len(comparisons) == sum(a is not None for a in args)
    for comparison in comparisons:
        assert comparison.ok, (comparison.argument, comparison.max_abs_error)


def test_central_differences_notebook_section_9() -> None:
    """The notebook's loss (sum(X*K))^2 with its analytic gradient 2*sum(X*K)*X."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    k = np.array([[0.5, -1.0], [0.2, 0.3]])

    def loss(kernel: np.ndarray) -> np.ndarray:
        return np.array(np.sum(x * kernel) ** 2)

    numeric = reference.numerical_gradient(loss, [k], np.array(1.0), wrt=0, step=1e-5)
    analytic = 2 * np.sum(x * k) * x
    # truncation of a quadratic's central difference is zero; rounding ~ 1e-16 / 1e-5
    assert np.max(np.abs(analytic - numeric)) < 1e-9
    assert math.isclose(float(np.sum(x * k)), 0.5 - 2.0 + 0.6 + 1.2)


def test_op_keywords_never_collide_with_the_checkers_own() -> None:
    """An op with an ``eps`` of its own (batch norm has one) must receive it; the checker's
    step is a separate argument (once, ``eps`` in the op's config was taken as the step)."""
    seen = []

    def scaled(x: np.ndarray, eps: float = 1.0) -> np.ndarray:
        seen.append(eps)
        return x * eps

    def scaled_backward(grad: np.ndarray, x: np.ndarray, eps: float = 1.0) -> tuple:
        return (grad * eps,)

    x = np.array([1.0, 2.0])
    [comparison] = reference.check_gradients(
        scaled, scaled_backward, [x], np.ones(2), (0,), kwargs={"eps": 3.0}
    )
    assert set(seen) == {3.0} and comparison.ok
    # central differences of a linear function: no truncation; rounding about u * |L| / h,
    # 1.1e-16 * 9 / 1e-6 = 1e-9 absolute against 3
    np.testing.assert_allclose(comparison.numerical, [3.0, 3.0], rtol=1e-9)


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_output_shape_is_the_forwards_shape(dims: int, data: st.DataObject) -> None:
    """The shape a backward's oracle takes instead of running the forward."""
    from reference.conv import conv_output_shape

    example = data.draw(conv_examples(dims))
    x, weight, bias = (example.arrays[n] for n in ("input", "weight", "bias"))
    forward = reference.__dict__[f"conv{dims}d"](x, weight, bias, **example.config)
    assert conv_output_shape(dims, x, weight, bias, **example.config) == forward.shape


@pytest.mark.parametrize("dims", DIMS)
@settings(max_examples=40)
@given(data=st.data())
def test_conv_transpose_output_shape_is_the_forwards_shape(dims: int, data: st.DataObject) -> None:
    """The shape a jvp's or backward's oracle takes instead of running the forward."""
    from reference.conv_transpose import conv_transpose_output_shape

    example = data.draw(conv_transpose_examples(dims))
    x, weight, bias = (example.arrays[n] for n in ("input", "weight", "bias"))
    forward = reference.__dict__[f"conv_transpose{dims}d"](x, weight, bias, **example.config)
    shape = conv_transpose_output_shape(dims, x, weight, bias, **example.config)
    assert shape == forward.shape


def test_conv_transpose_output_shape_refuses_what_the_forward_refuses() -> None:
    from reference.conv_transpose import conv_transpose_output_shape

    x, weight = np.zeros((1, 3, 4)), np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match="expects 2") as shape_error:
        conv_transpose_output_shape(1, x, weight)
    with pytest.raises(ValueError) as forward_error:
        reference.conv_transpose1d(x, weight)
    assert str(shape_error.value) == str(forward_error.value)


def test_conv_output_shape_refuses_what_the_forward_refuses() -> None:
    from reference.conv import conv_output_shape

    x, weight = np.zeros((1, 3, 4, 4)), np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match="kernel size 5") as shape_error:
        conv_output_shape(2, x, weight)
    with pytest.raises(ValueError) as forward_error:
        reference.conv2d(x, weight)
    assert str(shape_error.value) == str(forward_error.value)
