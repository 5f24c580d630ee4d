"""Strategies built once and shared: a composite strategy that builds its inner strategies
on every draw (st.one_of(...), st.sampled_from([...])) makes Hypothesis validate a new object
each time, which cost more than the draw itself (conv2d: 8.3 ms per example, 3.7 s of 24 s
in the small-knob helper alone). Each function here returns the same object for the same
arguments."""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import strategies as st


@cache
def optional(low: int, high: int) -> st.SearchStrategy[int | None]:
    """None (shrinks to it) or an int in [low, high]: an optional batch size or divisor."""
    return st.one_of(st.none(), st.integers(low, high))


@cache
def small(high: int) -> st.SearchStrategy[int]:
    """1 most of the time, else up to ``high``: stride and dilation."""
    return st.one_of(st.just(1), st.integers(1, high))


@cache
def choice(*options: Any) -> st.SearchStrategy[Any]:
    """One of ``options``, shrinking to the first (repeat an option to weight it)."""
    return st.sampled_from(options)
