"""The catalogue: one declarative entry per op, from which tests, reports and the CLI derive.

An entry (conformance.spec.OpSpec) names the op as torch.nn.functional and ``reference`` do,
its reference and backward, its array arguments, which are differentiable, a strategy of valid
examples, how each output is judged, and the regions of its parameter space the coverage
table must show hit. Each family's entries live in conformance/families/.
"""

from __future__ import annotations

from conformance.derivatives import with_derivatives
from conformance.families import blocks, conv, normalization, pool
from conformance.spec import OpSpec

# every differentiable op in four directions: forward, backward, jvp and double backward
CATALOGUE: tuple[OpSpec, ...] = tuple(
    with_derivatives(spec)
    for spec in (*conv.SPECS, *pool.SPECS, *normalization.SPECS, *blocks.SPECS)
)

BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in CATALOGUE}
