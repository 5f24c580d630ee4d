"""What a strategy draws: the config of one call and the arrays it takes.

Hypothesis draws every knob (shapes, stride, padding, ...) and a value kind and seed; NumPy
fills the arrays from that seed. Shrinking then works on the knobs, where bugs live, and
arrays are never the near-constant fills that element-wise array strategies tend to give.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# How array values are made, each on purpose:
#   normal    standard normal: the generic case
#   integers  small integer-valued floats: exact sums and ties
#   wide      log-uniform magnitudes over six decades with random signs: cancellation
#   specials  small integers with NaN, +-inf and -0.0 in about one element in six
#   sparse    small integers, three in four of them 0: windows that sum to 0 (lp pooling)
#   sinks     small integers with -inf in every other element: windows of -inf alone, the
#             maximum of which must still name one of their elements (max pooling only)
#   offset    standard normal around a common offset of 10 to 1000 (either sign): a mean many
#             standard deviations from 0, where a one-pass variance E[x^2] - E[x]^2 cancels
#             catastrophically (batch norm and channel statistics)
VALUE_KINDS = ("normal", "integers", "wide", "specials")
FINITE_KINDS = ("normal", "integers", "wide")
# where a common offset matters (the variance's conditioning): the statistics' ops
STATISTICS_KINDS = (*FINITE_KINDS, "offset")
SPECIAL_VALUES = np.array([np.nan, np.inf, -np.inf, -0.0])


def fill(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    """A float64 array of ``shape`` with values of ``kind``."""
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "integers":
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    if kind == "wide":
        magnitude = 10.0 ** rng.uniform(-3, 3, size=shape)
        return np.where(rng.random(shape) < 0.5, -magnitude, magnitude)
    if kind == "specials":
        values = rng.integers(-3, 4, size=shape).astype(np.float64)
        special = SPECIAL_VALUES[rng.integers(0, len(SPECIAL_VALUES), size=shape)]
        return np.where(rng.random(shape) < 1 / 6, special, values)
    if kind == "sparse":
        values = rng.integers(-3, 4, size=shape).astype(np.float64)
        return np.where(rng.random(shape) < 3 / 4, 0.0, values)
    if kind == "offset":
        offset = 10.0 ** rng.uniform(1, 3) * rng.choice([-1.0, 1.0])
        return offset + rng.standard_normal(shape)
    if kind == "sinks":
        values = rng.integers(-3, 4, size=shape).astype(np.float64)
        return np.where(rng.random(shape) < 1 / 2, -np.inf, values)
    raise ValueError(f"unknown value kind {kind!r}")


@dataclass(frozen=True)
class Example:
    """One drawn call: positional arrays in argument order, then keyword config."""

    arrays: Mapping[str, np.ndarray | None]
    config: Mapping[str, Any]
    values: str
    seed: int
    tags: Mapping[str, Any] = field(default_factory=dict)

    def grad_output(self, shape: tuple[int, ...]) -> np.ndarray:
        """The upstream gradient for a backward check, reproducible from the seed."""
        return fill(shape, self.values, np.random.default_rng(self.seed + 1))

    @property
    def omitted(self) -> tuple[str, ...]:
        """The arguments left out of the call at their default (omit_defaults)."""
        return tuple(self.tags.get("omitted", ()))

    @property
    def call_config(self) -> dict[str, Any]:
        """The keywords the implementation's call passes: the config but those left out."""
        omitted = self.omitted
        return {k: v for k, v in self.config.items() if k not in omitted}

    def key(self) -> str:
        """Identity of the example, for de-duplicating Hypothesis's replays."""
        shapes = {name: None if a is None else a.shape for name, a in self.arrays.items()}
        identity = (sorted(self.config.items()), shapes, self.values, self.seed)
        return repr((*identity, self.omitted) if self.omitted else identity)


def _as_tuple(value: Any, length: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * length


def _at_default(name: str, value: Any, default: Any, config: Mapping[str, Any]) -> bool:
    """Whether ``value`` means what the default means: equal to it (per axis for a tuple), or,
    for a pooling stride whose default None means the kernel, equal to the kernel."""
    if default is inspect.Parameter.empty:
        return False
    kernel_name = name.replace("stride", "kernel_size")  # pool_stride: pool_kernel_size
    if name.endswith("stride") and default is None and kernel_name in config:
        kernel = config[kernel_name]
        length = len(kernel) if isinstance(kernel, (tuple, list)) else 1
        if isinstance(value, (tuple, list)):
            length = len(value)
        return value is None or _as_tuple(value, length) == _as_tuple(kernel, length)
    if isinstance(value, (tuple, list)) and not isinstance(default, (tuple, list)):
        return len(value) > 0 and all(v == default and type(v) is type(default) for v in value)
    return bool(value == default and type(value) is type(default))


def omit_defaults(
    example: Example, mask: int, parameters: Mapping[str, inspect.Parameter]
) -> Example:
    """The example with the arguments the bits of ``mask`` pick among those at their default
    left out of the implementation's call (named in tags['omitted']: keywords not passed,
    trailing None arrays not passed). The config keeps their values, which are the defaults:
    what the oracle, the bounds and the regions read. ``mask`` 0: the example unchanged.
    ``parameters``: the reference's signature's (torch's), read once by the caller: inspect
    costs 0.1 ms a call."""
    if not mask:
        return example
    arrays = list(example.arrays)
    trailing: list[str] = []
    for name in reversed(arrays):
        if example.arrays[name] is not None or parameters[name].default is not None:
            break
        trailing.insert(0, name)
    candidates = trailing + [
        name
        for name, value in example.config.items()
        if name in parameters and _at_default(name, value, parameters[name].default, example.config)
    ]
    chosen = [name for index, name in enumerate(candidates) if mask >> (index % 8) & 1]
    # positional arrays are left out from the first chosen one to the end
    first = next((i for i, name in enumerate(trailing) if name in chosen), len(trailing))
    omitted_arrays = trailing[first:]
    omitted = (*omitted_arrays, *(k for k in example.config if k in chosen))
    if not omitted:
        return example
    tags = {**example.tags, "omitted": omitted}
    return Example(example.arrays, example.config, example.values, example.seed, tags)
