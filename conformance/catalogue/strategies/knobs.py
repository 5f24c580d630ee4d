"""Knobs drawn as bytes: every knob of an example comes from one Hypothesis choice.

Hypothesis costs about 0.1 ms per choice (its choice tree, spans and bookkeeping), and a
conv2d example drawn knob by knob made 47 choices: more time than judging the example. Here
a strategy draws a block of bytes (one choice) and decodes each knob from the next byte or
bytes, so an example costs one or two choices.

Shrinking keeps working knob by knob: Hypothesis shrinks a bytes choice element by element
(all zeros first, then each byte toward 0), and every decoder is monotone with 0 meaning the
simplest value - the range's low end, the first option, False, None, stride 1. A knob reads
the same bytes whatever the knobs before it decoded to, as long as the number of knobs before
it is unchanged. Unlike Hypothesis's integers, bytes come uniform: no extra weight at the ends
of a range, so a strategy weights what it wants weighted (small, optional, repeated options).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from hypothesis import strategies as st

BLOCK = 40  # bytes per example (a conv3d call reads at most 34); more draws another block

P = ParamSpec("P")
T = TypeVar("T")


@cache
def _block(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


class Knobs:
    """Decodes knobs from blocks of bytes drawn on demand from one Hypothesis draw function."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self._draw = draw
        self._bytes = _PENDING.pop() if _PENDING else b""  # a batch's slice (see batches)
        self._at = 0

    def _next(self, count: int) -> int:
        """The next ``count`` bytes as one big-endian integer, drawing a block if needed."""
        if self._at + count > len(self._bytes):
            self._bytes, self._at = self._draw(_block(max(BLOCK, count))), 0
        value = int.from_bytes(self._bytes[self._at : self._at + count], "big")
        self._at += count
        return value

    def nested(self, strategy: st.SearchStrategy[T]) -> T:
        """Draw a knob strategy inside this one, starting from this block's unread bytes: it
        then reads the same bytes whether or not it is drawn in a batch, and costs no choice."""
        _PENDING[:] = [self._bytes[self._at :]]  # empty when used up: the nested one draws
        self._bytes, self._at = b"", 0
        try:
            return self._draw(strategy)
        finally:
            _PENDING.clear()

    def integer(self, low: int, high: int) -> int:
        """An int in [low, high], uniform; byte 0 gives ``low``."""
        if high < low:
            raise ValueError(f"integer: empty range [{low}, {high}]")
        span = high - low + 1
        width = max(1, ((span - 1).bit_length() + 7) // 8)
        return low + (self._next(width) * span >> (8 * width))

    def boolean(self) -> bool:
        """False or True, even odds; shrinks to False."""
        return self._next(1) >= 128

    def choice(self, *options: Any) -> Any:
        """One of ``options``, shrinking to the first (repeat an option to weight it)."""
        return options[self.integer(0, len(options) - 1)]

    def small(self, high: int) -> int:
        """1 about half the time, else uniform in [1, high]: stride and dilation."""
        byte = self._next(1)
        return 1 if byte < 128 else 1 + ((byte - 128) * high >> 7)

    def optional(self, low: int, high: int) -> int | None:
        """None (shrinks to it) half the time, else an int in [low, high]: an optional batch
        size or divisor."""
        byte = self._next(1)
        return None if byte < 128 else low + ((byte - 128) * (high - low + 1) >> 7)

    def seed(self) -> int:
        """A 32-bit fill seed."""
        return self._next(4)

    def values_and_seed(self, kinds: tuple[str, ...]) -> tuple[str, int]:
        """A value kind and a fill seed. The kind is the seed modulo the number of kinds, close
        to uniform (Hypothesis's sampled_from had favoured the first entries: a ci run drew
        'specials', the last, for 8 examples of 150); seed 0 gives the first, plainest kind."""
        seed = self.seed()
        if _VARIANT[0]:  # the same configuration again, with the next kind's values
            seed += _VARIANT[0] * _STEP
        return kinds[seed % len(kinds)], seed


_PENDING: list[bytes] = []  # the bytes the next Knobs starts from, set by a batch
_VARIANT = [0]  # which value variant of its configuration the next example is (see batches)
# a variant's seed step: 1 modulo 3, 4 and 5 (every list of kinds), so variant v of an
# example whose kind is kinds[i] has kinds[i + v]: its values of another kind
_STEP = 60 * 44_240_597 + 1


@cache
def batches(
    one: st.SearchStrategy[T], size: int, variants: int = 1
) -> st.SearchStrategy[tuple[T, ...]]:
    """``size`` examples of a knob strategy from one drawn block of bytes, each example
    starting from its own slice. With ``variants`` > 1, each slice gives ``variants``
    examples in a row: the same configuration and shapes (the same bytes), each with values
    of the next kind and another seed, so that an implementation which compiles per
    configuration compiles once for all of them (the batch is cut to ``size``).

    Drawn as ``st.tuples`` of ``one``, the examples would be spans with the same label, and
    Hypothesis's mutator, which copies a span onto another of its label to make duplicates,
    would spend test cases on repeating an example of the batch (a ci group of 150 examples
    in cases of 5 had 51 distinct). Here the examples' spans hold no choice of their own."""

    @st.composite
    def batch(draw: st.DrawFn) -> tuple[T, ...]:
        configurations = -(-size // variants)
        block = draw(_block(configurations * BLOCK))
        drawn: list[T] = []
        for i in range(configurations):
            for variant in range(min(variants, size - len(drawn))):
                _PENDING[:] = [block[i * BLOCK : (i + 1) * BLOCK]]
                _VARIANT[0] = variant
                try:
                    drawn.append(draw(one))
                finally:
                    _PENDING.clear()
                    _VARIANT[0] = 0
        return tuple(drawn)

    return batch()


def knob_strategy(
    function: Callable[Concatenate[Knobs, P], T],
) -> Callable[P, st.SearchStrategy[T]]:
    """Like ``st.composite``, but the function takes a ``Knobs`` instead of a draw function."""

    @st.composite
    def strategy(draw: st.DrawFn, *args: Any, **kwargs: Any) -> T:
        return function(Knobs(draw), *args, **kwargs)

    @wraps(function)
    def build(*args: P.args, **kwargs: P.kwargs) -> st.SearchStrategy[T]:
        return strategy(*args, **kwargs)

    return build


def omitting_defaults(
    build: Callable[..., st.SearchStrategy[Any]], reference: Callable[..., Any]
) -> Callable[..., st.SearchStrategy[Any]]:
    """``build`` (a knob strategy of Examples) whose examples leave out, some of the time, the
    arguments they give their default value (in ``reference``'s signature: torch's), as
    callers write calls: keywords omitted, trailing None arrays not passed. One more byte,
    drawn last so the other knobs keep theirs, says which: 0 omits nothing. An
    implementation whose defaults differ from torch's (pooling's stride None meaning the
    kernel, dilation 1, no bias) then meets its own default."""
    from conformance.catalogue.example import omit_defaults

    inner = build.__wrapped__  # type: ignore[attr-defined]
    parameters = inspect.signature(reference).parameters  # once, not per example

    @knob_strategy
    def drawn(knobs: Knobs, *args: Any, **kwargs: Any) -> Any:
        example = inner(knobs, *args, **kwargs)
        return omit_defaults(example, knobs.integer(0, 255), parameters)

    return drawn
