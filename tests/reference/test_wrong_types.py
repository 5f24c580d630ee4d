"""Every public function of reference, called with wrong types and wrong values.

Each argument of each public function (everything in ``reference.__all__``, the methods of its
classes, and the layer builders of reference.layers; one valid call each in
tests/reference/valid_calls.py) is replaced, one at a time, by substitutes
(tests/reference/wrong_values.py):

- wrong (a dict, a string, 2.5 or 2.0 where an int is meant, a bool where a size or a mode is
  meant, None where the argument is required, a tuple of the wrong length or nested, 0 or -1
  where they are invalid, an array of the wrong rank or dtype, bytes, a masked array): the
  call must raise TypeError or ValueError whose message names the argument;
- same (np.int64(3) for 3, a list for a tuple, (3, 3) for 3, np.bool_ for a bool, a
  Fortran-ordered, strided or read-only copy of an array): the valid call's answer, bit for bit;
- either (a NumPy array of ints as a stride): a clear error or the valid call's answer.

Never another exception from deep inside NumPy, never a silently different answer, never a
hang (each call has a 10 s limit where the platform has SIGALRM).

The rules these encode, as torch's: a bool is never a size, a count or an index (True is not 1
here), and a bool argument (ceil_mode, return_indices, count_include_pad, training, a layer's
bias) takes only a bool or np.bool_, since a truthy string would silently switch the mode on.
A one-element tuple stands for every spatial dimension where torch repeats it (ATen's
expand_param_if_needed): the knobs of convolution, transposed convolution, max and average
pooling; fold, unfold, adaptive and lp pooling refuse it, as torch does for their kernel_size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from tests.reference.valid_calls import TABLE, caller, parameters, public_names, valid_kwargs
from tests.reference.wrong_values import Sub, names_argument, same_answer, short, time_limit


def judge(name: str, argument: str, sub: Sub, expected: Any) -> str | None:
    """None if the call with ``sub`` for ``argument`` behaves; else what went wrong."""
    kwargs = valid_kwargs(name)
    kwargs[argument] = sub.value
    where = f"{name}({argument}={short(sub.value)}) [{sub.label}, {sub.expect}]"
    try:
        with np.errstate(all="ignore"), time_limit(10):
            got = caller(name)(**kwargs)
    except (TypeError, ValueError) as error:
        if sub.expect == "same":
            return f"{where}: refused a value meaning the valid one: {error!r}"
        names = (argument, *TABLE[name].also.get(argument, ()))
        if not any(names_argument(str(error), n) for n in names):
            return f"{where}: {type(error).__name__} does not name {argument!r}: {error}"
        return None
    except Exception as error:
        return f"{where}: {type(error).__name__} from inside: {error}"
    if sub.expect == "wrong":
        return f"{where}: accepted, answered {short(got)}"
    if not same_answer(got, expected):
        return f"{where}: answered differently: {short(got)}"
    return None


def test_every_public_function_has_a_row() -> None:
    """A new public function must get a valid call in valid_calls.TABLE, or it escapes."""
    missing = sorted(public_names() - set(TABLE))
    stale = sorted(set(TABLE) - public_names())
    assert not missing, f"public functions without a row in valid_calls.TABLE: {missing}"
    assert not stale, f"rows for functions that are not public: {stale}"


def test_every_public_callable_is_exported() -> None:
    exported = set(reference.__all__)
    unlisted = sorted(
        name
        for name, value in vars(reference).items()
        if not name.startswith("_") and callable(value) and name not in exported
    )
    assert not unlisted, f"public callables missing from reference.__all__: {unlisted}"


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_argument_has_a_kind(name: str) -> None:
    """Each parameter is fuzzed: a new argument cannot escape either."""
    if name not in public_names():
        pytest.skip(f"{name} is not public (test_every_public_function_has_a_row says so)")
    assert set(parameters(name)) == set(TABLE[name].kinds), name


@pytest.mark.parametrize("name", sorted(TABLE))
def test_wrong_and_equivalent_arguments(name: str) -> None:
    """Every fixed substitute of every argument: a clear error naming it, or the answer."""
    expected = caller(name)(**valid_kwargs(name))
    assert same_answer(expected, caller(name)(**valid_kwargs(name))), "the valid call varies"
    problems = [
        problem
        for argument, kind in TABLE[name].kinds.items()
        for sub in kind.fixed(valid_kwargs(name)[argument])
        if (problem := judge(name, argument, sub, expected)) is not None
    ]
    assert not problems, "\n".join(problems)


FUZZED = sorted(name for name, row in TABLE.items() if row.kinds)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_wrong_arguments(data: st.DataObject) -> None:
    """Random wrong values (any float or a too small int where an int is meant, text, bytes,
    containers, tuples of the wrong length or with wrong items, arrays of a wrong rank, shape
    or dtype) for a random argument of a random function: a clear error naming it."""
    name = data.draw(st.sampled_from(FUZZED), label="function")
    argument = data.draw(st.sampled_from(sorted(TABLE[name].kinds)), label="argument")
    valid = valid_kwargs(name)[argument]
    value = data.draw(TABLE[name].kinds[argument].random(valid), label="value")
    problem = judge(name, argument, Sub("random", value, "wrong"), None)
    assert problem is None, problem
