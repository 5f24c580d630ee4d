"""The catalogue: one declarative entry per op, from which tests, reports and the CLI derive.

An entry (conformance.catalogue.spec.OpSpec) names the op as torch.nn.functional and
``reference`` do, its reference and backward, its array arguments, which are differentiable,
a strategy of valid examples, how each output is judged, and the regions of its parameter
space the coverage table must show hit. Each family's entries live in
conformance/catalogue/families/; every differentiable one gains here its forward-mode and
second-derivative directions, with their oracles (reference.jvp, reference.double_backward,
reference.fused_derivatives) and their bounds (conformance.judge.derivatives,
conformance.judge.derivative_bounds).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import reference
from conformance.catalogue.families import blocks, conv, normalization, pool
from conformance.catalogue.spec import CustomTolerances, OpSpec
from conformance.judge.block_derivative_bounds import (
    residual_derivative_tolerances,
    separable_derivative_tolerances,
)
from conformance.judge.derivative_bounds import (
    batch_norm_derivative_tolerances,
    lp_derivative_tolerances,
)
from conformance.judge.derivatives import DERIVATIVE_DIRECTIONS, DERIVATIVE_REGIONS
from conformance.judge.fused_bounds import conv_bn_relu_derivative_tolerances

# the ops whose derivative directions are not sums of products: their bounds, by running
# error analysis of the reference's formulas
CUSTOM_DERIVATIVE_BOUNDS: dict[str, Callable[[OpSpec], CustomTolerances]] = {
    "batch_norm": batch_norm_derivative_tolerances,
    "depthwise_separable_conv": separable_derivative_tolerances,
    "residual_block": residual_derivative_tolerances,
    "conv_bn_relu": conv_bn_relu_derivative_tolerances,
    **{f"lp_pool{d}d": lp_derivative_tolerances for d in (1, 2, 3)},
}


# differentiable ops judged in forward and backward only, with the reason
WITHOUT_DERIVATIVE_DIRECTIONS = {
    "conv_max_pool": "its jvp and double backward (a max pool's selection of a convolution's "
    "tangent) have neither a reference formula nor a bound yet: conv2d's and max_pool2d's "
    "entries judge them op by op",
    "conv_transpose_conv": "its jvp and double backward (bilinear in the two weights) have no "
    "reference formula nor bound yet: the conv2d and conv_transpose2d entries judge them op by op",
}


def with_derivatives(spec: OpSpec) -> OpSpec:
    """The entry with its jvp and double-backward directions (differentiable ops only)."""
    if not spec.differentiable or spec.name in WITHOUT_DERIVATIVE_DIRECTIONS:
        return spec
    custom = CUSTOM_DERIVATIVE_BOUNDS.get(spec.name)
    return dataclasses.replace(
        spec,
        directions=(*spec.directions, *DERIVATIVE_DIRECTIONS),
        coverage={**spec.coverage, **DERIVATIVE_REGIONS.get(spec.name, {})},
        # the package exports every op's (reference.jvp, reference.double_backward, and the
        # fusion chains' reference.fused_derivatives)
        reference_jvp=getattr(reference, f"{spec.name}_jvp"),
        reference_double_backward=getattr(reference, f"{spec.name}_double_backward"),
        derivative_tolerances=None if custom is None else custom(spec),
    )


def with_defaults_region(spec: OpSpec) -> OpSpec:
    """The entry's coverage with 'defaults omitted': examples whose call leaves arguments
    out at their default (the strategies draw them: knobs.omitting_defaults)."""
    parameters = inspect.signature(spec.reference).parameters.values()
    if all(p.default is inspect.Parameter.empty for p in parameters):
        return spec  # nothing to leave out (adaptive_avg_pool: input and output_size)
    region = {"defaults omitted": lambda example: bool(example.omitted)}
    return dataclasses.replace(spec, coverage={**spec.coverage, **region})


# every differentiable op in four directions: forward, backward, jvp and double backward
CATALOGUE: tuple[OpSpec, ...] = tuple(
    with_derivatives(with_defaults_region(spec))
    for spec in (*conv.SPECS, *pool.SPECS, *normalization.SPECS, *blocks.SPECS)
)

BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in CATALOGUE}
