"""Where one example's check spends its time, step by step.

With ``CONFORMANCE_STEP_PROFILE=1`` (``python -m conformance.bench.check_profile`` sets it),
``run_example`` times each of its steps and the example's row carries them
(``step_seconds``, a JSON object of seconds by step name):

- prepare: the inputs rounded to the tested dtype, their float64 copies, the row's columns;
- oracle: the reference in float64 (its argument checks and plans included);
- call: the implementation's own call (the framework's work and its adapter's conversions),
  timed where it ran;
- hand-off: the rest of the call step, what the runner adds around it: remembering the call
  for a history repro and, where the call runs in another process than the check (the model
  command; an in-process run's quarantined calls), the arguments' and results' trip there and
  back (0 where the runner does not say how long the call itself took: the call step then
  holds both). A campaign judges each batch of examples in the helper process that makes
  their calls: the trip there is the batch's, outside the checks' steps.
- bound: each output's error bound (the magnitude pass over |inputs| included);
- measure: the comparison of each output with the oracle's against its bound;
- verdict: the rest (the not-judged notes, the worst output, the row's figures).

Off (the default), a step costs one flag test and no row changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

ENABLED = os.environ.get("CONFORMANCE_STEP_PROFILE", "0") == "1"
STEPS = ("prepare", "oracle", "call", "hand-off", "bound", "measure", "verdict")
_SPENT: dict[str, float] = {}


_OFF = nullcontext()


@contextmanager
def _timed(name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        _SPENT[name] = _SPENT.get(name, 0.0) + time.perf_counter() - began


def step(name: str) -> AbstractContextManager[None]:
    """Time the block as step ``name`` of the current example (when enabled; off, one
    shared do-nothing context, no generator made on the checks' hot path)."""
    return _timed(name) if ENABLED else _OFF


def split_off(name: str, kept: float | None, into: str) -> None:
    """Of step ``name``'s seconds so far, keep ``kept`` and move the rest to step ``into``
    (when enabled; ``kept`` None, unknown: nothing moves)."""
    if not ENABLED or kept is None or name not in _SPENT:
        return
    total = _SPENT[name]
    kept = min(max(kept, 0.0), total)
    _SPENT[name] = kept
    _SPENT[into] = _SPENT.get(into, 0.0) + total - kept


def taken() -> str:
    """The current example's step seconds as the row's JSON, and a fresh start for the next
    ('' when disabled)."""
    if not ENABLED:
        return ""
    spent = {name: round(seconds, 7) for name, seconds in _SPENT.items()}
    _SPENT.clear()
    return json.dumps(spent)
