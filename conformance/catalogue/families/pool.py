"""Catalogue entries of the pooling family: max/avg/lp pooling, adaptive pooling, fold/unfold.

Max pooling values and indices, adaptive max pooling and unfold (pure data movement) compare
bitwise. Sums (avg forward, every gradient but lp's, fold) use the sum-of-products bound,
with max pooling's magnitude taken from |grad_output| routed along the same argmax. lp
pooling has a bound of its own (lp_tolerances).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

import reference
from conformance.catalogue.dtypes import input_scale, largest, numpy_dtype, underflow_unit
from conformance.catalogue.example import Example
from conformance.catalogue.spec import (
    InDtype,
    OpSpec,
    Region,
    ToleranceContext,
    input_array,
    per_dim,
    single_output,
)
from conformance.catalogue.strategies.knobs import omitting_defaults
from conformance.catalogue.strategies.pool import (
    adaptive_examples,
    fold_examples,
    pool_examples,
    unfold_examples,
)
from conformance.judge.default_bounds import sum_of_products_tolerances
from conformance.judge.error_model import ORACLE_ROUNDOFF, UNIT_ROUNDOFF, Tolerance, gamma
from reference.pool import lp_window_spread, max_pool_output_shape


def _spatial(example: Example, dims: int) -> tuple[int, ...]:
    return tuple(input_array(example).shape[-dims:])


def _knobs(example: Example, dims: int) -> dict[str, tuple[int, ...]]:
    config = example.config
    kernel = per_dim(config["kernel_size"], dims)
    stride = config.get("stride")
    return {
        "kernel": kernel,
        "stride": kernel if stride is None else per_dim(stride, dims),
        "padding": per_dim(config.get("padding", 0), dims),
        "dilation": per_dim(config.get("dilation", 1), dims),
    }


def _windows_per_element(knobs: Mapping[str, tuple[int, ...]]) -> int:
    """An upper bound on how many windows one input element falls in."""
    return math.prod(
        -(-(d * (k - 1) + 1) // s)
        for k, s, d in zip(knobs["kernel"], knobs["stride"], knobs["dilation"], strict=True)
    )


def _pool_grid(example: Example, dims: int) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    knobs = _knobs(example, dims)
    out = _output_size(_spatial(example, dims), bool(example.config["ceil_mode"]), **knobs)
    return knobs, out


@functools.lru_cache(maxsize=1024)
def _output_size(
    spatial: tuple[int, ...],
    ceil_mode: bool,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """The pooling's output size (remembered: several regions of every example ask)."""
    out = reference.pool_output_size(spatial, kernel, stride, padding, dilation, ceil_mode)
    assert isinstance(out, tuple)
    return out


def _ceil_adds_window(example: Example, dims: int) -> bool:
    knobs, out = _pool_grid(example, dims)
    return out != _output_size(_spatial(example, dims), False, **knobs)


def _overhang(example: Example, dims: int) -> bool:
    """Some window reaches past the input and its right padding (only with ceil_mode)."""
    knobs, out = _pool_grid(example, dims)
    return any(
        (o - 1) * s - p + d * (k - 1) + 1 > size + p
        for o, s, p, d, k, size in zip(
            out,
            knobs["stride"],
            knobs["padding"],
            knobs["dilation"],
            knobs["kernel"],
            _spatial(example, dims),
            strict=True,
        )
    )


def _empty_windows(example: Example, dims: int) -> np.ndarray:
    """Per output position (spatial axes), whether its window has no element inside the
    input (dilation can step over a short input): empty on any axis is empty."""
    knobs, out = _pool_grid(example, dims)
    empty = np.zeros(out, dtype=bool)
    for axis, (o, s, p, d, k, size) in enumerate(
        zip(
            out,
            knobs["stride"],
            knobs["padding"],
            knobs["dilation"],
            knobs["kernel"],
            _spatial(example, dims),
            strict=True,
        )
    ):
        starts = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
        on_axis = ~((starts >= 0) & (starts < size)).any(axis=1)
        shape = [1] * dims
        shape[axis] = o
        empty |= on_axis.reshape(shape)
    return empty


def _empty_window(example: Example, dims: int) -> bool:
    """Some window has no element inside the input."""
    return bool(_empty_windows(example, dims).any())


def max_tolerances(dims: int, spec: OpSpec) -> Callable[[ToleranceContext], dict[str, Tolerance]]:
    """The default model (a gradient sums over the windows an element is the maximum of), and
    the index of a window with no element is not judged: no element is its maximum, so no
    index is right (torch gives one out of range, another framework -1 or 0); it is recorded
    in the row instead. Every other index, and every value (-inf, the maximum of nothing,
    included), is compared bit for bit."""

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        found = sum_of_products_tolerances(spec, context)
        indices = context.expected.get("indices")
        if context.direction != "forward" or indices is None:
            return found
        empty = np.broadcast_to(_empty_windows(context.example, dims), indices.shape)
        if empty.any():
            bound = np.where(empty, np.inf, 0.0)
            found["indices"] = Tolerance(bound, np.ones_like(bound), 0)
        return found

    return tolerances


def _minus_inf_window(example: Example, dims: int) -> bool:
    """Some window with elements has -inf as its maximum (all its elements are -inf)."""
    x = input_array(example)
    if not np.isneginf(x).any():
        return False
    op = getattr(reference, f"max_pool{dims}d")
    config = {k: v for k, v in example.config.items() if k != "return_indices"}
    with np.errstate(all="ignore"):
        output = np.asarray(op(x, **config))
    return bool(np.isneginf(output).any()) and not _empty_window(example, dims)


def _overlapping(example: Example, dims: int) -> bool:
    knobs = _knobs(example, dims)
    return any(
        s < d * (k - 1) + 1
        for k, s, d in zip(knobs["kernel"], knobs["stride"], knobs["dilation"], strict=True)
    )


def _has(predicate: Callable[[np.ndarray], np.ndarray]) -> Region:
    return lambda example: bool(predicate(input_array(example)).any())


def _value_regions() -> dict[str, Region]:
    return {
        "ties (integer values)": lambda e: e.values in ("integers", "specials", "sinks"),
        "NaN in input": _has(np.isnan),
        "+-inf in input": _has(np.isinf),
        "-0.0 in input": _has(lambda x: (x == 0) & np.signbit(x)),
    }


def _unbatched(dims: int) -> Region:
    return lambda example: input_array(example).ndim == dims + 1


def _config_is(name: str, value: Any) -> Region:
    return lambda example: example.config.get(name) == value


def _knob_above(name: str, dims: int, floor: int) -> Region:
    return lambda example: max(_knobs(example, dims)[name]) > floor


def _divisor_case(ceil_mode: bool, count_include_pad: bool) -> Region:
    return lambda e: bool(
        e.config["ceil_mode"] == ceil_mode and e.config["count_include_pad"] == count_include_pad
    )


def _only_window_strided(example: Example, dims: int) -> bool:
    """Some axis with stride > 1 has one window, which is also its last."""
    knobs, out = _pool_grid(example, dims)
    return any(o == 1 and s > 1 for o, s in zip(out, knobs["stride"], strict=True))


def _pool_regions(dims: int, kind: str) -> dict[str, Region]:
    regions: dict[str, Region] = {
        "unbatched": _unbatched(dims),
        "a strided axis whose last window is the only one": lambda e: _only_window_strided(e, dims),
        "stride = kernel (default)": _config_is("stride", None),
        "overlapping windows": lambda e: _overlapping(e, dims),
        "ceil_mode adds a window": lambda e: _ceil_adds_window(e, dims),
    }
    if kind != "lp":
        regions["padding > 0"] = _knob_above("padding", dims, 0)
        regions["window past the right padding"] = lambda e: _overhang(e, dims)
    if kind == "max":
        regions["dilation > 1"] = _knob_above("dilation", dims, 1)
        regions["return_indices"] = _config_is("return_indices", True)
        regions["window with no element"] = lambda e: _empty_window(e, dims)
        regions["a window's maximum is -inf"] = lambda e: _minus_inf_window(e, dims)
    if kind == "avg":
        for ceil in (False, True):
            for include in (False, True):
                name = f"ceil_mode={ceil}, count_include_pad={include}"
                regions[name] = _divisor_case(ceil, include)
        if dims > 1:
            regions["divisor_override"] = lambda e: e.config.get("divisor_override") is not None
        regions["input smaller than kernel"] = lambda e: any(
            size < k for size, k in zip(_spatial(e, dims), _knobs(e, dims)["kernel"], strict=True)
        )
    if kind == "lp":
        for p in (1.0, 2.0, 3.0, 1.5):
            regions[f"norm_type={p:g}"] = _config_is("norm_type", p)
        regions["ceil_mode partial window"] = lambda e: _overhang(e, dims)
        regions["norm_type=1, a window sums to 0"] = InDtype(
            lambda e, dtype: bool(e.config["norm_type"] == 1 and _lp_zero_window(e, dims, dtype))
        )
        regions["wide magnitudes"] = lambda e: e.values == "wide"
        regions["norm_type>1, a window sums to 0"] = InDtype(
            lambda e, dtype: bool(e.config["norm_type"] > 1 and _lp_zero_window(e, dims, dtype))
        )
    if kind != "lp":
        regions.update(_value_regions())
    return regions


def _lp_call(dims: int, example: Example, x: np.ndarray, norm_type: float) -> np.ndarray:
    knobs = {k: v for k, v in example.config.items() if k != "norm_type"}
    op = getattr(reference, f"lp_pool{dims}d")
    with np.errstate(all="ignore"):
        return np.asarray(op(x, norm_type, **knobs))


def _lp_sums(dims: int, example: Example, x: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """(S, M): each window's sum of x**p and of |x|**p, in one pooling call (the two stacked
    on the batch axis; each window's sum is its own, so the same values as two calls)."""
    unbatched = x.ndim == dims + 1
    xb = x[np.newaxis] if unbatched else x
    both = _lp_call(dims, example, np.concatenate([np.power(xb, p), np.power(np.abs(xb), p)]), 1.0)
    sums, magnitude = both[: len(xb)], both[len(xb) :]
    return (sums[0], magnitude[0]) if unbatched else (sums, magnitude)


def _lp_zero_window(example: Example, dims: int, dtype: str = "float64") -> bool:
    """A window whose x**p sum to 0 as torch forms it, x as rounded to the tested dtype:
    normal values may cancel exactly once rounded (bfloat16: -1.78125 and 1.78125 in one
    window), and torch's lp_pool is avg_pool(x**p) * window, whose average is stored in the
    tested dtype: a sum of one float16 subnormal step over a window of 2 (-6e-8 / 2) stores
    as 0 (a ci campaign's float16 jvp met it)."""
    p = example.config["norm_type"]
    stored = numpy_dtype(dtype)
    scale = input_scale(dtype, example.values)
    x = (input_array(example) * scale).astype(stored).astype(np.float64)
    with np.errstate(all="ignore"):
        powered = np.power(x, p)
        average = _lp_call(dims, example, powered, 1.0) / np.prod(_knobs(example, dims)["kernel"])
    return bool((average.astype(stored) == 0).any())


def lp_tolerances(dims: int) -> Callable[[ToleranceContext], dict[str, Tolerance]]:
    """The bound of y = S**(1/p), S = sum over a window of x**p (first order in u).

    Each x**p carries up to ceil(p) + 1 roundings (repeated multiplication, or pow), the sum
    and torch's rescaling 3 more, so with n = window + ceil(p) + 3, S errs by at most
    gamma_n * M, M = sum |x|**p, and y relatively by (1/p) * kappa * gamma_n, kappa = M/|S|.
    The exponent 1/p itself is rounded to the working precision (|delta| <= u/p), which
    multiplies y by S**delta: a relative error of |ln S| * u / p, large for large or tiny S.
    Then the root's and the output's roundings. Where S = 0 < M the root of the absolute
    error bounds y. Where M may pass the tested dtype's largest value, the stored x**p or S
    may be inf, and y with it: no claim. The gradient x**(p-1) * S**(1/p-1) per window errs
    relatively by |1/p - 1| * (kappa * gamma_n + |ln S| * u) in the root, plus gamma_{m+7}
    for the products and the sum over the m windows an element falls in (below); those
    per-window bounds are spread to the input with the same window structure (lp pooling's
    own backward at p = 1). Every term is counted for the implementation's u and for the
    float64 oracle's. Normalized error is reported in units of bound / n.

    The gradient's intermediates are stored in the tested dtype between torch's steps
    (torch's autograd graph: c = g * ((1/p) * P**(1/p - 1)), times the kernel size K, avg_pool's
    backward sums the windows' c and divides by K, then times p * x**(p - 1)), and each stored
    value may round, underflow or overflow in that dtype; a float16 x = 1.4e-4 at p = 3 has
    x**2 = 2e-8, below half float16's least subnormal: torch stores 0 and the element's gradient
    is 0 where the exact one is 5e-5. Per element i, with G = sum over the windows w holding i
    of c_w and D = p * x**(p - 1) (G D is the gradient; G's size |G| <= (reach + its error) / p
    with reach = sum_w |g_w| |S_w|**(1/p - 1)):
      roundings: the windows' sum (gamma_windows) and seven more (pow, 1/p, g, K and 1/K for
      c; pow and p for D), each also u_out when stored in a narrower tested dtype;
      underflow (Higham 2nd ed., eq. 2.8: fl(a op b) = (a op b)(1 + delta) + eta): a stored
      value of D errs by at most eta_out (p + 1) (x**(p - 1), then times p), which G carries:
      eta_out (p + 1) |G|; c's five stored steps each by eta_out times the factors applied
      after it (g, 1/p, K and 1/K: at most max(1, |g_w|)), which D carries:
      5 eta_out D sum_w max(1, |g_w|). Sums of stored values underflow exactly (their
      result is representable), so the windows' sum adds none;
      overflow: where c's intermediates (|S|**(1/p - 1) with its error, times |g| and K), G or D
      may reach the dtype's largest value, the stored value may be infinite and the gradient
      inf or NaN (inf * 0): no claim there (an infinite bound).
    """

    def tolerances(context: ToleranceContext) -> dict[str, Tolerance]:
        example = context.example
        x = context.inputs["input"]
        assert x is not None
        p = float(example.config["norm_type"])
        with np.errstate(all="ignore"):
            sums, magnitude = _lp_sums(dims, example, x, p)
            kappa = np.where(magnitude == 0, 0.0, magnitude / np.abs(sums))
            log_size = np.where(sums == 0, 0.0, np.abs(np.log(np.abs(sums))))
        knobs = _knobs(example, dims)
        n = math.prod(knobs["kernel"]) + math.ceil(p) + 3
        u, u_out = UNIT_ROUNDOFF[context.accumulation_dtype], UNIT_ROUNDOFF[context.dtype]
        spread = gamma(n, u) + gamma(n, ORACLE_ROUNDOFF)
        if context.accumulation_dtype != context.dtype:
            # x**p, S and the rescaled S are stored in the (narrower) tested dtype between
            # torch's steps: three more roundings, and each stored x**p may underflow by eta
            spread += 3 * u_out
        eta = n * underflow_unit(context.dtype)
        with np.errstate(all="ignore"):
            # S's relative error r; capped at 1, where S may have rounded to 0
            r = np.minimum(kappa * spread + np.where(sums == 0, 0.0, eta / np.abs(sums)), 1.0)
        exponent = (u + ORACLE_ROUNDOFF) * log_size  # from rounding 1/p (or 1/p - 1), per |.|
        if context.direction == "forward":
            y = context.expected["output"]
            assert y is not None
            with np.errstate(all="ignore"):
                # |(1 +- r)**(1/p) - 1| <= 1 - (1 - r)**(1/p): ~ r/p, and right up to r = 1
                root = 1.0 - np.power(1.0 - r, 1.0 / p)
                bound = np.abs(y) * (root + exponent / p + 2 * u_out)
                at_zero = np.power(spread * magnitude + eta, 1.0 / p)
            bound = np.where((sums == 0) & (magnitude > 0), at_zero, bound)
            # x**p and S are stored in the tested dtype: past its range S may be inf, and y too
            bound = np.where(magnitude * (1 + spread) >= largest(context.dtype), np.inf, bound)
            if not (p == int(p) and int(p) % 2 == 0):
                # x**p can be negative: where S may have rounded across 0, its sign, and so
                # whether the root is a number or NaN, is unknown; no claim is made there
                bound = np.where(r >= 1, np.inf, bound)
            return {"output": Tolerance(bound, bound / n, n)}
        grad, gradient = context.grad_output, context.expected["grad_input"]
        assert grad is not None and gradient is not None
        windows = _windows_per_element(knobs)
        steps = windows + 7  # the sum over the windows, and c's five and D's two roundings
        products = gamma(steps, u) + gamma(steps, ORACLE_ROUNDOFF)
        if context.accumulation_dtype != context.dtype:
            products += 7 * u_out  # each step's result stored in the tested dtype
        eta_out, top = underflow_unit(context.dtype), largest(context.dtype)
        knob_config = {k: v for k, v in example.config.items() if k != "norm_type"}

        def over_windows(per_window: np.ndarray) -> np.ndarray:
            """Each element's sum of a per-window value over the windows holding it."""
            return lp_window_spread(dims, per_window, x, **knob_config)

        with np.errstate(all="ignore"):
            # S**(1/p - 1) moves by at most (1 - r)**(1/p - 1) - 1 (~ |1/p - 1| r); without
            # bound once r = 1: S may have rounded to 0 and the gradient with it
            root = np.power(1.0 - r, 1.0 / p - 1.0) - 1.0
            relative = root + abs(1.0 / p - 1.0) * exponent + products
            powered = np.where(sums == 0, 0.0, np.power(np.abs(sums), 1.0 / p - 1.0))
            size = np.abs(grad) * powered  # |c_w| p
            per_window = np.where(sums == 0, 0.0, size * relative)
            # where S may have rounded to 0, torch's gradient there (0 for p = 1, 0 * inf
            # for p > 1) says nothing: no claim; nor where c's intermediates may overflow
            peak = (
                powered * (1.0 + root) * np.maximum(1.0, np.abs(grad)) * math.prod(knobs["kernel"])
            )
            unknown = ((r >= 1) & (sums != 0)) | (peak >= top)
            per_window = np.where(unknown, np.inf, per_window)
            reach = over_windows(per_window)
            factor = np.power(np.abs(x), p - 1.0)  # |D| / p
            size_g = (over_windows(size) + reach) / p  # |G|, with its error
            lifted = over_windows(np.where(sums == 0, 0.0, np.maximum(1.0, np.abs(grad))))
            underflow = eta_out * ((p + 1) * size_g + 5 * p * factor * lifted)
            bound = factor * reach + underflow + u_out * np.abs(gradient)
            bound = np.where((size_g >= top) | (p * factor >= top), np.inf, bound)
            bound = np.where(np.isnan(bound), np.inf, bound)  # 0 * inf: no claim either
        return {"grad_input": Tolerance(bound, bound / n, n)}

    return tolerances


def _max_outputs(config: Mapping[str, Any]) -> tuple[str, ...]:
    return ("output", "indices") if config.get("return_indices") else ("output",)


def _pool_terms(dims: int, kind: str) -> Callable[[Example, tuple[int, ...]], dict[str, int]]:
    def terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
        knobs = _knobs(example, dims)
        division = 1 if kind == "avg" else 0  # avg divides each sum once more
        return {
            "output": math.prod(knobs["kernel"]) + division,
            "grad_input": _windows_per_element(knobs) + division,
        }

    return terms


def _pool_spec(dims: int, kind: str) -> OpSpec:
    name = f"{kind}_pool{dims}d"
    spec = OpSpec(
        name=name,
        family="pooling",
        reference=getattr(reference, name),
        reference_backward=getattr(reference, f"{name}_backward"),
        array_args=("input",),
        differentiable=("input",),
        examples=lambda: omitting_defaults(pool_examples, getattr(reference, name))(dims, kind),
        terms=_pool_terms(dims, kind),
        coverage=_pool_regions(dims, kind),
        exact=frozenset({"output", "indices"}) if kind == "max" else frozenset(),
        linear_args=() if kind == "max" else None,
        outputs=_max_outputs if kind == "max" else single_output,
        tolerances=lp_tolerances(dims) if kind == "lp" else None,
    )
    if kind == "max":
        return dataclasses.replace(
            spec,
            tolerances=max_tolerances(dims, spec),
            output_shape=partial(max_pool_output_shape, dims),
        )
    return spec


def _adaptive_sizes(example: Example, dims: int) -> list[tuple[int, int]]:
    """(input size, output size) per spatial dimension."""
    sizes = _spatial(example, dims)
    requested = per_dim(example.config["output_size"], dims)
    return [(n, n if o is None else o) for n, o in zip(sizes, requested, strict=True)]


def _adaptive_terms(dims: int, kind: str) -> Callable[[Example, tuple[int, ...]], dict[str, int]]:
    def terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
        sizes = _adaptive_sizes(example, dims)
        division = 1 if kind == "avg" else 0
        widest = math.prod(-(-n // o) + 1 for n, o in sizes)
        reach = math.prod(-(-o // n) + 1 for n, o in sizes)
        return {"output": widest + division, "grad_input": reach + division}

    return terms


def _adaptive_regions(dims: int, kind: str) -> dict[str, Region]:
    def some(test: Callable[[int, int], bool]) -> Region:
        return lambda e: any(test(n, o) for n, o in _adaptive_sizes(e, dims))

    regions: dict[str, Region] = {
        "unbatched": _unbatched(dims),
        "output < input, not dividing": some(lambda n, o: o < n and n % o != 0),
        "output divides input": some(lambda n, o: o < n and n % o == 0),
        "output = input": some(lambda n, o: o == n),
        "output > input": some(lambda n, o: o > n),
    }
    if dims > 1:
        regions["None in output_size"] = lambda e: None in per_dim(e.config["output_size"], dims)
    if kind == "max":
        regions["return_indices"] = _config_is("return_indices", True)
    regions.update(_value_regions())
    return regions


def _adaptive_spec(dims: int, kind: str) -> OpSpec:
    name = f"adaptive_{kind}_pool{dims}d"
    return OpSpec(
        name=name,
        family="pooling",
        reference=getattr(reference, name),
        reference_backward=getattr(reference, f"{name}_backward"),
        array_args=("input",),
        differentiable=("input",),
        examples=lambda: omitting_defaults(adaptive_examples, getattr(reference, name))(dims, kind),
        terms=_adaptive_terms(dims, kind),
        coverage=_adaptive_regions(dims, kind),
        exact=frozenset({"output", "indices"}) if kind == "max" else frozenset(),
        linear_args=() if kind == "max" else None,
        outputs=_max_outputs if kind == "max" else single_output,
    )


def _block_regions(name: str) -> dict[str, Region]:
    def overlapping(example: Example) -> bool:
        return _overlapping(example, 2)

    image_dims = 2 if name == "unfold" else 1  # fold's input is (C*k, L)
    return {
        "unbatched": _unbatched(image_dims),
        "overlapping blocks": overlapping,
        "stride > 1": _knob_above("stride", 2, 1),
        "dilation > 1": _knob_above("dilation", 2, 1),
        "padding > 0": _knob_above("padding", 2, 0),
        **_value_regions(),
        # the specials kind fills grad_output too: NaN, +-inf and -0.0 reach the backward
        # even where the input drew none (a region for baseline entries about the gradient)
        "specials in grad_output": lambda e: e.values == "specials",
    }


def _block_spec(name: str) -> OpSpec:
    # unfold moves data (exact); its gradient, fold, adds overlapping blocks; and vice versa.
    is_unfold = name == "unfold"

    def terms(example: Example, output_shape: tuple[int, ...]) -> dict[str, int]:
        taps = math.prod(per_dim(example.config["kernel_size"], 2))
        return {"output": taps, "grad_input": taps}

    return OpSpec(
        name=name,
        family="pooling",
        reference=getattr(reference, name),
        reference_backward=getattr(reference, f"{name}_backward"),
        array_args=("input",),
        differentiable=("input",),
        examples=omitting_defaults(
            unfold_examples if is_unfold else fold_examples, getattr(reference, name)
        ),
        terms=terms,
        coverage=_block_regions(name),
        exact=frozenset({"output"} if is_unfold else {"grad_input"}),
    )


SPECS: tuple[OpSpec, ...] = (
    *(_pool_spec(dims, kind) for kind in ("max", "avg", "lp") for dims in (1, 2, 3)),
    *(_adaptive_spec(dims, kind) for kind in ("avg", "max") for dims in (1, 2, 3)),
    _block_spec("unfold"),
    _block_spec("fold"),
)
