"""Knobs decoded from drawn bytes: every value reachable, 0 the simplest, and shrinking still
minimizes knob by knob through Hypothesis's element-wise bytes shrinker."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from conformance.catalogue import CATALOGUE
from conformance.catalogue.strategies.conv import conv_examples
from conformance.catalogue.strategies.knobs import BLOCK, Knobs
from conformance.catalogue.strategies.pool import pool_examples


class _Bytes:
    """A draw function that serves given bytes as the drawn blocks."""

    def __init__(self, *blocks: bytes) -> None:
        self.blocks = list(blocks)

    def __call__(self, strategy: Any) -> bytes:
        return self.blocks.pop(0)


def _decode(method: str, *args: Any) -> list[Any]:
    """The knob each of the 256 byte values decodes to."""
    return [getattr(Knobs(_Bytes(bytes([b]) * BLOCK)), method)(*args) for b in range(256)]


@pytest.mark.parametrize(("low", "high"), [(0, 0), (1, 3), (0, 7), (2, 5), (0, 255), (1, 256)])
def test_integer_reaches_every_value_in_order(low: int, high: int) -> None:
    values = _decode("integer", low, high)
    assert values[0] == low and values[-1] == high
    assert sorted(values) == values  # monotone: a smaller byte is never a larger knob
    assert set(values) == set(range(low, high + 1)) or high - low + 1 > 256


def test_wide_ranges_read_several_bytes() -> None:
    knobs = Knobs(_Bytes(bytes([0xFF, 0xFF, 0x00, 0x01]) + bytes(BLOCK - 4)))
    assert knobs.integer(0, 2**16 - 1) == 2**16 - 1
    assert knobs.integer(0, 2**16 - 1) == 1
    assert Knobs(_Bytes(bytes([1, 2, 3, 4]) + bytes(BLOCK - 4))).seed() == 0x01020304


def test_small_optional_boolean_and_choice() -> None:
    small = _decode("small", 3)
    assert small[0] == 1 and small.count(1) > 128 and set(small) == {1, 2, 3}
    optional = _decode("optional", 1, 5)
    assert optional[0] is None and optional.count(None) == 128
    assert {v for v in optional if v is not None} == {1, 2, 3, 4, 5}
    assert _decode("boolean").count(True) == 128 and _decode("boolean")[0] is False
    choices = _decode("choice", "a", "a", "b", "c")
    assert choices[0] == "a" and choices.count("a") == 128 and set(choices) == {"a", "b", "c"}


def test_a_used_up_block_draws_the_next() -> None:
    knobs = Knobs(_Bytes(bytes(range(BLOCK)), bytes([7]) * BLOCK))
    assert [knobs.integer(0, 255) for _ in range(BLOCK)] == list(range(BLOCK))
    assert knobs.integer(0, 255) == 7


def test_empty_range_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="integer: empty range"):
        Knobs(_Bytes(bytes(BLOCK))).integer(3, 2)


# find() searches until the condition holds, then shrinks: a database would replay an earlier
# run's minimum instead of showing this run's shrinking; 2000 examples give a rare condition
# (a stride of 3 on one axis) room to turn up; the health checks (filter_too_much while
# searching) and the deadline judge Hypothesis's speed, which is not what these tests measure
_SHRINK = settings(
    database=None, max_examples=2000, suppress_health_check=list(HealthCheck), deadline=None
)


def test_shrinking_minimizes_every_knob_but_the_one_that_matters() -> None:
    """Asked for a stride of 3 on the second axis, Hypothesis shrinks the rest of a conv2d call
    to its simplest: unbatched, one channel, 1x1 kernel, no padding, bias-free, seed 0."""
    found = find(
        conv_examples(2),
        lambda e: isinstance(e.config["stride"], tuple) and e.config["stride"][1] == 3,
        settings=_SHRINK,
    )
    assert found.config["stride"] == (1, 3)
    assert found.config["dilation"] == 1 or found.config["dilation"] == (1, 1)
    assert found.config["groups"] == 1 and found.config["padding_mode"] == "zeros"
    shapes = {name: None if a is None else a.shape for name, a in found.arrays.items()}
    # out 1 per axis, no remainder
    assert shapes == {"input": (1, 1, 1), "weight": (1, 1, 1, 1), "bias": None}
    assert (found.values, found.seed) == ("normal", 0)


def test_shrinking_keeps_a_needed_pair_of_knobs() -> None:
    """Two knobs needed at once (ceil mode and a stride above 1) shrink to their smallest
    values that still make the call: the others go to their simplest."""
    found = find(
        pool_examples(1, "max"),
        lambda e: e.config["ceil_mode"] and e.config["stride"] not in (None, 1, (1,)),
        settings=_SHRINK,
    )
    assert found.config["ceil_mode"] is True
    assert found.config["stride"] in (2, (2,))
    assert found.config["kernel_size"] in (1, (1,)) and found.config["return_indices"] is False
    assert (found.values, found.seed) == ("normal", 0)


@pytest.mark.parametrize("kind", ["examples", "invalid calls"])
def test_a_batch_holds_distinct_examples(kind: str) -> None:
    """Hypothesis's mutator copies a span onto another of the same label; a batch drawn as
    one block gives it nothing to copy, so 30 cases make (nearly) all distinct examples: only
    the first case, all zero bytes, repeats the simplest example. (Drawn as st.tuples of the
    op's strategy, 30 cases of 5 made about 80 distinct examples.)"""
    from hypothesis import given
    from hypothesis import strategies as st

    from conformance.campaign.tests import _PER_CASE, _batch
    from conformance.catalogue import CATALOGUE

    spec = next(spec for spec in CATALOGUE if spec.name == "conv2d")
    keys: set[str] = set()
    cases = []

    @settings(database=None, max_examples=30, deadline=None)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        drawn = data.draw(_batch(spec, kind))
        cases.append(drawn)
        keys.update(item.key() if kind == "examples" else item[0].key() for item in drawn)

    run()
    assert len(cases) == 30 and all(len(case) == _PER_CASE for case in cases)
    assert len(keys) >= 29 * _PER_CASE, len(keys)


def test_a_group_runs_exactly_its_examples_in_batches() -> None:
    from conformance.campaign.profiles import EXAMPLES_PER_CASE, per_case

    for examples in (1, 4, 7, 8, 20, 150, 1000):
        size = per_case(examples)
        assert 1 <= size <= EXAMPLES_PER_CASE and examples % size == 0
    assert (per_case(150), per_case(8), per_case(7)) == (5, 4, 1)


@pytest.mark.parametrize("name", ["conv2d", "max_pool2d", "batch_norm", "residual_block"])
def test_value_variants_share_a_configuration_and_change_the_values(name: str) -> None:
    """values_per_configuration: a batch's examples come in runs of the same config and
    shapes (one compilation), each with values of another kind and seed; with one variant
    the batch is the one drawn before variants existed (the same bytes, the same examples)."""
    from conformance.catalogue.strategies.knobs import batches

    spec = next(spec for spec in CATALOGUE if spec.name == name)
    one = spec.examples()
    pairs: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []

    @settings(database=None, max_examples=20, deadline=None)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        block = data.draw(st.binary(min_size=2 * BLOCK, max_size=2 * BLOCK))
        plain = _from_block(batches(one, 2), block)
        varied = _from_block(batches(one, 6, 3), block)
        pairs.append((plain, varied))

    run()
    for plain, varied in pairs:
        assert len(varied) == 6
        for start in (0, 3):
            first = varied[start]
            assert first.key() == plain[start // 3].key()  # variant 0: the plain example
            for other in varied[start + 1 : start + 3]:
                assert dict(other.config) == dict(first.config)
                assert _shapes(other) == _shapes(first)
                assert (other.values, other.seed) != (first.values, first.seed)
        kinds = [example.values for example in varied[:3]]
        assert len(set(kinds)) == 3, kinds  # each variant another kind of values


def _shapes(example: Any) -> dict[str, Any]:
    return {k: None if a is None else a.shape for k, a in example.arrays.items()}


def _from_block(strategy: st.SearchStrategy[Any], block: bytes) -> Any:
    """The batch the strategy draws when its one choice is ``block``."""
    from hypothesis.internal.conjecture.data import ConjectureData

    data = ConjectureData.for_choices([block])
    return data.draw(strategy)
