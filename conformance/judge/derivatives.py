"""The two derivative directions beyond reverse mode: ``jvp`` and ``double_backward``.

An implementation offers them as ``<op>_jvp(tangents, *arrays, **config)`` (the tangent of
the op's first output, tangents one per differentiable argument) and
``<op>_double_backward(grad_output, grad_grads, *arrays, **config)`` (the gradients of
sum_i <grad_grads[i], <op>_backward(grad_output, *arrays)[i]> with respect to each
differentiable argument, then to grad_output); the oracle is reference.jvp and
reference.double_backward. The tangents and grad_grads are drawn from the example's seed with
its value kind, like grad_output.

Error model. A bilinear op's JVP, f(dx, w) + f(x, dw) + db, and its second derivatives,
G_x(g; w = v_w) and G_w(g; x = v_x), are sums of products again: the sum-of-products bound
applies with M the same formula on absolute values and as many terms as the longest sum (the
JVP adds the terms of each argument's product: at most one forward's count per
differentiable argument). Autograd composes these from separate ops, each storing its result
in the tested dtype before the next adds it: each such storage rounds by at most u_out times
the stored value, itself at most M (every partial result of a sum of products is bounded by
the sum of the magnitudes of its products), so s storages add s u_out M. The JVP stores each
argument's term and each partial sum (s = 2 per argument); a second derivative its one
product and the op that reshapes it (the padding's adjoint, a reduction: s = 2). In float64
and float32, where the accumulation is the dtype, this is the gamma of s more terms; in
float16 and bfloat16, accumulating in float32, it is what storing in half precision costs.
A linear op's (average pooling, unfold, fold) is its forward on the tangent, with the
forward's count; max pooling's picks one tangent element, exactly (as the
forward picks its value). The second derivatives of the (piecewise) linear ops are 0,
exactly. lp pooling, batch norm and the two blocks have bounds of their own
(conformance.judge.derivative_bounds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

import reference
import reference.jvp as forward_mode
from conformance.catalogue.dtypes import underflow_unit
from conformance.catalogue.example import Example, fill
from conformance.catalogue.spec import OpSpec, ToleranceContext
from conformance.judge.error_model import UNIT_ROUNDOFF, Tolerance, sum_of_products
from reference import normalization

DERIVATIVE_DIRECTIONS = ("jvp", "double_backward")
# what each direction calls on an implementation: op + suffix
SUFFIX = {
    "forward": "",
    "backward": "_backward",
    "jvp": "_jvp",
    "double_backward": "_double_backward",
}
JVP_OUTPUT = "tangent"
GRAD_GRAD_OUTPUT = "grad_grad_output"
# seeds of the extra arrays, beside the example's own (arrays: seed, grad_output: seed + 1)
_SEED_OFFSET = {"jvp": 2, "double_backward": 3}


def implementation_attribute(op: str, direction: str) -> str:
    return op + SUFFIX[direction]


def direction_arrays(
    spec: OpSpec, example: Example, direction: str
) -> dict[str, np.ndarray | None]:
    """The tangents (jvp) or grad_grads (double backward) of an example, float64, one per
    differentiable argument (None where the argument is None), from its seed and value kind."""
    rng = np.random.default_rng(example.seed + _SEED_OFFSET[direction])
    # the offset kind is about the input's conditioning (a mean far from 0), not about the
    # directions: its tangents are normal (offset ones would multiply to 1e6, past float16)
    kind = "normal" if example.values == "offset" else example.values
    drawn: dict[str, np.ndarray | None] = {}
    for name in spec.differentiable:
        array = example.arrays[name]
        drawn[name] = None if array is None else fill(array.shape, kind, rng)
    return drawn


def output_names(spec: OpSpec, direction: str) -> tuple[str, ...]:
    if direction == "jvp":
        return (JVP_OUTPUT,)
    return (*spec.gradient_names, GRAD_GRAD_OUTPUT)


FLOAT16_MAX = 65504.0
# torch multiplies r ** 3, formed from its half-precision saved statistics, by factors of
# order 1 before anything shrinks it: within a factor 4 of the range it already overflowed
# (a residual block with r ** 3 = 58,395 exactly gave -inf where the tangent is 20.3)
INVSTD_CUBED_LIMIT = FLOAT16_MAX / 4


def _near_float16_invstd_cubed(values: np.ndarray, eps: float) -> bool:
    """Whether a batch norm's input has (var + eps) ** -1.5 past INVSTD_CUBED_LIMIT in some
    channel; var is np.var's, bit for bit (the reference's two-pass statistics)."""
    _, var = normalization._statistics(values)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return bool(np.any((var + eps) ** -1.5 > INVSTD_CUBED_LIMIT))


def _invstd_cubed_overflows_float16(example: Example) -> bool:
    """Batch statistics with (var + eps) ** -1.5 past float16's largest value, at the scale
    float16 is tested at (the wide kind times 2^-8): torch's forward-mode formula forms that
    power (reports/findings/torch/batch-norm-forward-ad-float16-invstd-cubed.md)."""
    x = example.arrays["input"]
    if not example.config.get("training") or x is None or x.shape[0] == 0:
        return False
    scale = 2.0**-8 if example.values == "wide" else 1.0
    return _near_float16_invstd_cubed(x * scale, example.config["eps"])


def _block_invstd_cubed_overflows_float16(example: Example) -> bool:
    """As for batch_norm, for any of a residual block's batch norms: their inputs are the
    block's conv outputs (a channel of equal values has variance 0). Only the block's path to
    the last of them is run (conv1, bn1, ReLU, conv2; the shortcut's conv): a region of every
    example, and the whole forward was most of the regions' time."""
    scale = 2.0**-8 if example.values == "wide" else 1.0
    arrays = example.arrays
    x, w1, w2 = arrays["input"], arrays["conv1_weight"], arrays["conv2_weight"]
    ws = arrays["shortcut_weight"]
    assert x is not None and w1 is not None and w2 is not None
    x, w1, w2 = x * scale, w1 * scale, w2 * scale
    g1, b1 = (None if a is None else a * scale for a in (arrays["bn1_weight"], arrays["bn1_bias"]))
    stride, eps = example.config.get("stride", 1), example.config.get("eps", 1e-5)
    with np.errstate(all="ignore"):
        a1 = reference.conv2d(x, w1, None, stride, 1)
        if _near_float16_invstd_cubed(a1, eps):
            return True
        if ws is not None and _near_float16_invstd_cubed(
            reference.conv2d(x, ws * scale, None, stride), eps
        ):
            return True
        hidden = np.maximum(reference.batch_norm(a1, None, None, g1, b1, True, 0.0, eps), 0.0)
        return _near_float16_invstd_cubed(reference.conv2d(hidden, w2, None, 1, 1), eps)


def _lp_curvature_overflows_float16(dims: int) -> Callable[[Example], bool]:
    """A window whose sum S of x ** p has |S| ** (1/p - 2) past float16's largest value, at
    the scale float16 is tested at: torch forms that power for lp pooling's second derivative
    (reports/findings/torch/lp-pool-double-backward-float16-overflow.md)."""

    def hit(example: Example) -> bool:
        x = example.arrays["input"]
        if x is None:
            return False
        scale = 2.0**-8 if example.values == "wide" else 1.0
        config = example.config
        with np.errstate(all="ignore"):
            _, p, sums = forward_mode.lp_parts(
                dims, x * scale, config["norm_type"], config["kernel_size"],
                config.get("stride"), config.get("ceil_mode", False),
            )  # fmt: skip
            power = np.abs(sums[sums != 0]) ** (1.0 / p - 2.0)
        return bool(np.any(power > FLOAT16_MAX))

    return hit


# regions where a derivative direction goes its own way (coverage, and baseline entries)
DERIVATIVE_REGIONS = {
    "batch_norm": {
        "(var + eps)^-1.5 near float16's range": _invstd_cubed_overflows_float16,
        # the offset kind fills grad_output too (10 to 1000): the double backward's sums of
        # its products pass 65504 in float16 (reports/findings/torch/
        # batch-norm-double-backward-float16-overflow.md)
        "grad_output of the offset kind": lambda e: e.values == "offset",
    },
    **{
        f"lp_pool{dims}d": {
            "S^(1/p - 2) past float16's range": _lp_curvature_overflows_float16(dims)
        }
        for dims in (1, 2, 3)
    },
    "residual_block": {
        "a batch norm's (var + eps)^-1.5 near float16's range": (
            _block_invstd_cubed_overflows_float16
        ),
    },
}


def _magnitudes(
    spec: OpSpec, context: ToleranceContext, function: object, *leading: object
) -> tuple[np.ndarray | None, ...]:
    linear = spec.array_args if spec.linear_args is None else spec.linear_args
    arrays = [
        np.abs(a) if a is not None and name in linear else a for name, a in context.inputs.items()
    ]
    with np.errstate(invalid="ignore", over="ignore"):
        result = function(*leading, *arrays, **dict(context.example.config))  # type: ignore[operator]
    return result if isinstance(result, tuple) else (result,)


def _absolute(arrays: Mapping[str, np.ndarray | None]) -> list[np.ndarray | None]:
    return [None if a is None else np.abs(a) for a in arrays.values()]


def sum_of_products_derivatives(spec: OpSpec, context: ToleranceContext) -> dict[str, Tolerance]:
    """The default bound of the new directions (module docstring): bilinear, linear and max
    pooling ops."""
    terms = spec.terms(context.example, context.output_shape)
    present = sum(context.inputs[name] is not None for name in spec.differentiable)
    # a bilinear op's JVP sums each argument's products; a linear op has one argument
    jvp_terms = max(1, present) * terms.get("output", 1)
    # a linear op's JVP is one op on the tangent, stored once (its final rounding, in the bound)
    jvp_storages = 2 * present if present > 1 else 0
    tangents = _absolute(context.tangents)
    exact_forward = "output" in spec.exact
    tolerances: dict[str, Tolerance] = {}

    def judge(name: str, magnitude: np.ndarray | None, n_terms: int, storages: int) -> None:
        oracle = context.expected[name]
        if oracle is None or magnitude is None:
            return
        if exact_forward and name in (JVP_OUTPUT, GRAD_GRAD_OUTPUT):
            return  # a selection, exact (no tolerance: judged bit for bit)
        found = sum_of_products(
            oracle, magnitude, n_terms, context.accumulation_dtype, context.dtype
        )
        # each storage may also land among the dtype's subnormals: eta more (error_model)
        stored = storages * (
            UNIT_ROUNDOFF[context.dtype] * np.where(np.isfinite(oracle), magnitude, 0.0)
            + underflow_unit(context.dtype)
        )
        tolerances[name] = Tolerance(
            found.bound + stored, found.scale + stored / max(storages, 1), n_terms
        )

    assert spec.reference_jvp is not None and spec.reference_double_backward is not None
    if context.direction == "jvp":
        (magnitude,) = _magnitudes(spec, context, spec.reference_jvp, tangents)
        judge(JVP_OUTPUT, magnitude, jvp_terms, jvp_storages)
        return tolerances
    assert context.grad_output is not None
    magnitudes = _magnitudes(
        spec, context, spec.reference_double_backward, np.abs(context.grad_output), tangents
    )
    for name, magnitude in zip(output_names(spec, "double_backward"), magnitudes, strict=True):
        if name == GRAD_GRAD_OUTPUT:
            judge(name, magnitude, jvp_terms, jvp_storages)
        else:
            judge(name, magnitude, terms.get(name, 1), 2 if present > 1 else 0)
    return tolerances
