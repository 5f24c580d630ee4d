"""How to break an argument, and how to restate it: the substitutes of test_wrong_types.

A Kind describes one sort of argument (a size knob, a count, a bool, a real, an array, ...).
``fixed`` lists hand-picked substitutes for a valid value, each one of:

- wrong: must raise TypeError or ValueError naming the argument;
- same: means what the valid value means (np.int64(3) for 3, a list for a tuple, a
  Fortran-ordered copy of an array): must give the valid call's answer, bit for bit;
- either: a clear error or the valid call's answer (what torch takes but the reference need
  not, such as a NumPy array of ints as a stride).

``random`` draws values that are all wrong. The rest of the module judges answers:
``same_answer`` (bitwise), ``names_argument`` and ``time_limit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Strategy = st.SearchStrategy[Any]


@dataclass(frozen=True)
class Sub:
    label: str
    value: Any
    expect: str  # "wrong", "same" or "either"


def wrong(**values: Any) -> list[Sub]:
    return [Sub(label, value, "wrong") for label, value in values.items()]


def same(**values: Any) -> list[Sub]:
    return [Sub(label, value, "same") for label, value in values.items()]


def int_scalars(value: int) -> dict[str, Any]:
    """NumPy integer scalars equal to ``value`` (those that can hold it)."""
    scalars: dict[str, Any] = {"np_int64": np.int64(value)}
    if -(2**31) <= value < 2**31:
        scalars["np_int32"] = np.int32(value)
    if 0 <= value < 256:
        scalars["np_uint8"] = np.uint8(value)
    return scalars


TEXT_AND_CONTAINERS: Strategy = st.one_of(
    st.text(max_size=4),
    st.binary(max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2),
)


class Kind:
    """How to break (and how to restate) one sort of argument."""

    def fixed(self, valid: Any) -> list[Sub]:
        raise NotImplementedError

    def random(self, valid: Any) -> Strategy:
        """Values that are all wrong."""
        raise NotImplementedError


@dataclass(frozen=True)
class Knob(Kind):
    """An int or a tuple of ``dims`` ints, each at least ``minimum`` (stride, padding, ...).

    ``one``: what a one-element tuple is for dims > 1, "same" where the op repeats it as torch
    does, else "wrong". ``optional``: None (or an empty tuple) means a default. ``strings``:
    strings that are valid ('same', 'valid' for a conv's padding). ``none_items``: None may
    stand for one dimension (adaptive pooling's output_size)."""

    dims: int
    minimum: int = 1
    one: str = "wrong"
    optional: bool = False
    strings: tuple[str, ...] = ()
    none_items: bool = False

    def fixed(self, valid: Any) -> list[Sub]:
        values = (valid,) * self.dims if isinstance(valid, int) else tuple(valid)
        v, low, dims = values[0], self.minimum - 1, self.dims
        # fmt: off
        subs = wrong(
            float_=2.5, integral_float=float(v), np_float64=np.float64(v), true=True,
            false=False, np_bool=np.bool_(True), text=str(v), bytes_=bytes([v % 256] * dims),
            other_text="full" if self.strings else "same", dict_={}, set_={v}, object_=object(),
            too_small=low, too_small_in_tuple=(low, *values[1:]), too_long=(*values, v),
            nested=(values,), nested_items=tuple((x,) for x in values),
            float_items=tuple(float(x) for x in values), bool_items=(True,) * dims,
            float_in_list=[*values[:-1], 2.5],
        )
        # fmt: on
        if self.strings:
            subs += wrong(upper=self.strings[0].upper())
        if not self.none_items:
            subs += wrong(none_items=(None,) * dims)
        if not self.optional:
            subs += wrong(none=None, empty=())
        subs.append(Sub("ndarray", np.array(values), "either"))
        equal: dict[str, Any] = {"tuple_": values, "list_": list(values)}
        equal["np_items"] = tuple(np.int64(x) for x in values)
        if len(set(values)) == 1:
            equal.update(int_=v, **int_scalars(v))
        subs += same(**equal)
        if dims > 1:
            subs.append(Sub("one_element", (v,), self.one if len(set(values)) == 1 else "wrong"))
        return subs

    def random(self, valid: Any) -> Strategy:
        dims, low = self.dims, self.minimum - 1
        wrong_length = st.lists(st.integers(self.minimum, 4), max_size=5).filter(
            lambda items: (
                len(items) != dims
                and not (self.one == "same" and len(items) == 1)
                and not (self.optional and not items)
            )
        )
        bad_items = [st.floats(), st.booleans(), st.text(max_size=2)]
        if not self.none_items:
            bad_items.append(st.none())
        options: list[Strategy] = [
            st.integers(max_value=low),
            st.floats(),
            st.booleans(),
            TEXT_AND_CONTAINERS.filter(lambda value: value not in self.strings),
            wrong_length.map(tuple),
            st.lists(st.one_of(bad_items), min_size=dims, max_size=dims).map(tuple),
            st.lists(st.integers(max_value=low), min_size=dims, max_size=dims).map(tuple),
        ]
        if not self.optional:
            options.append(st.none())
        return st.one_of(options)


@dataclass(frozen=True)
class Count(Kind):
    """One int of at least ``minimum`` (groups, dims, channels); minimum None: any int."""

    minimum: int | None = 1

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        subs = wrong(
            float_=2.5, integral_float=float(valid), np_float64=np.float64(valid), true=True,
            false=False, np_bool=np.bool_(True), text=str(valid), bytes_=bytes([abs(valid) % 256]),
            dict_={}, none=None, tuple_=(valid,), list_=[valid], complex_=complex(valid, 0),
        )
        # fmt: on
        if self.minimum is not None:
            subs += wrong(too_small=self.minimum - 1, negative=min(-1, self.minimum - 2))
        subs.append(Sub("zero_dim_array", np.array(valid), "either"))
        return subs + same(**int_scalars(valid))

    def random(self, valid: Any) -> Strategy:
        options: list[Strategy] = [st.floats(), st.booleans(), st.none(), TEXT_AND_CONTAINERS]
        options.append(st.lists(st.integers(), max_size=3))
        if self.minimum is not None:
            options.append(st.integers(max_value=self.minimum - 1))
        return st.one_of(options)


@dataclass(frozen=True)
class Flag(Kind):
    """A bool: ceil_mode, return_indices, count_include_pad, training, bias, affine."""

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        return wrong(
            one=1, zero=0, float_=1.0, text="True", empty_text="", none=None, dict_={},
            tuple_=(valid,), np_int=np.int64(1),
        ) + same(np_bool=np.bool_(valid))
        # fmt: on

    def random(self, valid: Any) -> Strategy:
        lists = st.lists(st.booleans())
        return st.one_of(st.integers(), st.floats(), st.none(), TEXT_AND_CONTAINERS, lists)


@dataclass(frozen=True)
class Real(Kind):
    """A real number; ``low``: "gt0" (positive), "ge0" (non-negative) or None; NaN and inf
    are wrong unless allowed."""

    low: str | None = None
    nan_ok: bool = False
    inf_ok: bool = False

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        subs = wrong(
            text=str(valid), none=None, dict_={}, tuple_=(valid,), list_=[valid], true=True,
            np_bool=np.bool_(False), complex_=complex(valid, 1), bytes_=b"1",
        )
        # fmt: on
        if self.low is not None:
            subs += wrong(negative=-1.0)
        if self.low == "gt0":
            subs += wrong(zero=0.0)
        if not self.nan_ok:
            subs += wrong(nan=float("nan"))
        if not self.inf_ok:
            subs += wrong(inf=float("inf"))
        equal: dict[str, Any] = {"np_float64": np.float64(valid)}
        if float(valid).is_integer():
            equal.update(int_=int(valid), **int_scalars(int(valid)))
        return subs + same(**equal)

    def random(self, valid: Any) -> Strategy:
        options: list[Strategy] = [st.booleans(), st.none(), TEXT_AND_CONTAINERS]
        options.append(st.lists(st.floats()))
        if self.low is not None:
            options.append(st.floats(max_value=-1e-300, allow_nan=False))
        if not self.nan_ok:
            options.append(st.just(float("nan")))
        return st.one_of(options)


@dataclass(frozen=True)
class OptionalNonzero(Kind):
    """avg pooling's divisor_override: None or a nonzero int."""

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        return wrong(
            zero=0, float_=2.5, integral_float=float(valid), true=True, text=str(valid),
            dict_={}, tuple_=(valid,),
        ) + same(**int_scalars(valid))
        # fmt: on

    def random(self, valid: Any) -> Strategy:
        return st.one_of(st.just(0), st.floats(), st.booleans(), TEXT_AND_CONTAINERS)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few strings (padding_mode, a pool's kind)."""

    choices: tuple[str, ...]

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        return wrong(
            unknown="mirror", empty="", upper=valid.upper(), none=None, int_=3, dict_={},
            bytes_=valid.encode(), tuple_=(valid,), list_=[valid],
        ) + same(np_str=np.str_(valid))
        # fmt: on

    def random(self, valid: Any) -> Strategy:
        text = st.text(max_size=8).filter(lambda text: text not in self.choices)
        return st.one_of(text, st.integers(), st.none(), st.binary(max_size=4))


@dataclass(frozen=True)
class Array(Kind):
    """A floating ndarray. ``ndims``: the valid ranks (None: ``min_ndim`` or more); ``exact``:
    only the valid shape is valid (a gradient, a bias); ``shares_dtype``: another array fixes
    its dtype; ``readonly``: what a read-only copy is, "same", or "wrong" where the op writes
    into it."""

    ndims: tuple[int, ...] | None = None
    min_ndim: int = 0
    exact: bool = False
    required: bool = True
    shares_dtype: bool = True
    readonly: str = "same"

    def _rank_ok(self, ndim: int) -> bool:
        return ndim >= self.min_ndim if self.ndims is None else ndim in self.ndims

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        subs = wrong(
            list_=valid.tolist(), int64=valid.astype(np.int64), bool_=valid.astype(bool),
            complex_=valid.astype(np.complex128), object_=valid.astype(object),
            masked=np.ma.masked_array(valid), float_=2.5, np_float64=np.float64(2.5), text="x",
            dict_={},
        )
        # fmt: on
        if self.required:
            subs += wrong(none=None)
        if not self._rank_ok(0):
            subs += wrong(zero_dim=np.zeros(()))
        if self.exact or not self._rank_ok(valid.ndim + 2):
            subs += wrong(extra_axes=valid[np.newaxis, np.newaxis])
        if self.shares_dtype:
            subs += wrong(float32=valid.astype(np.float32))
        readonly = valid.copy()
        readonly.flags.writeable = False
        subs.append(Sub("read_only", readonly, self.readonly))
        equal: dict[str, Any] = {}
        if valid.ndim >= 2:
            equal["fortran"] = np.asfortranarray(valid)
        if valid.ndim >= 1:
            equal["strided"] = np.repeat(valid, 2, axis=-1)[..., ::2]
        return subs + same(**equal)

    def random(self, valid: Any) -> Strategy:
        bad_dtype = st.sampled_from([np.int8, np.int64, np.uint8, np.bool_, np.complex128])
        shapes = hnp.array_shapes(min_dims=0, max_dims=6, min_side=1, max_side=3)
        if self.exact:
            shapes = shapes.filter(lambda shape: shape != valid.shape)
        else:
            shapes = shapes.filter(lambda shape: not self._rank_ok(len(shape)))
        options: list[Strategy] = [hnp.arrays(bad_dtype, valid.shape), hnp.arrays(float, shapes)]
        options += [st.lists(st.floats(), max_size=3), st.floats(), TEXT_AND_CONTAINERS]
        if self.required:
            options.append(st.none())
        if self.shares_dtype:
            options.append(hnp.arrays(st.sampled_from([np.float16, np.float32]), valid.shape))
        return st.one_of(options)


@dataclass(frozen=True)
class Function(Kind):
    def fixed(self, valid: Any) -> list[Sub]:
        return wrong(none=None, text="conv2d", int_=3, dict_={})

    def random(self, valid: Any) -> Strategy:
        return st.one_of(st.none(), st.integers(), TEXT_AND_CONTAINERS)


@dataclass(frozen=True)
class Items(Kind):
    """A sequence (gradcheck's args, a stack of layers); ``bad``: wrong sequences for this
    argument; ``alike``: other sequences that mean the same."""

    bad: tuple[Any, ...] = ()
    alike: tuple[Any, ...] = ()

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        subs = wrong(
            text="abc", none=None, int_=3, dict_={}, set_={1}, bytes_=b"ab", mapping={"a": 1},
        )
        # fmt: on
        subs += [Sub(f"bad_{i}", value, "wrong") for i, value in enumerate(self.bad)]
        subs += same(tuple_=tuple(valid), list_=list(valid))
        return subs + [Sub(f"alike_{i}", value, "same") for i, value in enumerate(self.alike)]

    def random(self, valid: Any) -> Strategy:
        return st.one_of(st.none(), st.integers(), st.floats(), TEXT_AND_CONTAINERS)


@dataclass(frozen=True)
class Index(Kind):
    """An index into ``count`` positional arguments (gradcheck's wrt)."""

    count: int

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        return wrong(
            negative=-1, past_the_end=self.count, float_=float(valid), true=True,
            text=str(valid), none=None, dict_={}, tuple_=(valid,),
        ) + same(**int_scalars(valid))
        # fmt: on

    def random(self, valid: Any) -> Strategy:
        outside = st.one_of(st.integers(max_value=-1), st.integers(min_value=self.count))
        return st.one_of(outside, st.floats(), st.booleans(), st.none(), TEXT_AND_CONTAINERS)


@dataclass(frozen=True)
class Indices(Kind):
    """Indices into ``count`` positional arguments (gradcheck's differentiable)."""

    count: int

    def fixed(self, valid: Any) -> list[Sub]:
        # fmt: off
        return wrong(
            text="012", none=None, int_=0, dict_={}, past_the_end=(self.count,),
            negative=(-1,), float_item=(0.0,), bool_item=(True,), nested=((0,),),
        ) + same(list_=list(valid), np_items=tuple(np.int64(i) for i in valid))
        # fmt: on

    def random(self, valid: Any) -> Strategy:
        outside = st.one_of(st.integers(max_value=-1), st.integers(min_value=self.count))
        bad_items = st.lists(st.one_of(st.floats(), st.booleans()), min_size=1, max_size=3)
        indices = st.lists(outside, min_size=1, max_size=3).map(tuple)
        return st.one_of(indices, bad_items, st.none(), st.text(max_size=3))


@dataclass(frozen=True)
class Options(Kind):
    """gradcheck's kwargs: a mapping of argument names (or None)."""

    def fixed(self, valid: Any) -> list[Sub]:
        pairs = list(valid.items())
        subs = wrong(text="padding=1", pairs=pairs, int_=3, int_keys={1: 1})
        return subs + same(proxy=types.MappingProxyType(dict(valid)))

    def random(self, valid: Any) -> Strategy:
        return st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers()))


@dataclass(frozen=True)
class Shape(Kind):
    """A layer method's input_shape; ``longer``: whether one more entry is wrong."""

    longer: bool = True

    def fixed(self, valid: Any) -> list[Sub]:
        rest = tuple(valid[1:])
        # fmt: off
        subs = wrong(
            text="abc", none=None, int_=3, dict_={}, float_=2.5, bytes_=bytes(valid),
            float_entry=(2.5, *rest), integral_float_entry=(float(valid[0]), *rest),
            bool_entry=(True, *rest), negative_entry=(-1, *rest), nested=(tuple(valid),),
        )
        # fmt: on
        if self.longer:
            subs += wrong(longer=(*valid, 5))
        return subs + same(list_=list(valid), np_items=tuple(np.int64(n) for n in valid))

    def random(self, valid: Any) -> Strategy:
        entry = st.one_of(st.floats(), st.booleans(), st.none(), st.integers(max_value=-1))
        entries = st.lists(entry, min_size=1, max_size=5).map(tuple)
        return st.one_of(entries, st.none(), st.integers(), TEXT_AND_CONTAINERS)


@dataclass(frozen=True)
class Layer(Kind):
    """A Residual's body or shortcut: a layer description."""

    required: bool = True

    def fixed(self, valid: Any) -> list[Sub]:
        subs = wrong(int_=3, text="conv", dict_={}, mapping={"kernel_size": 3}, listed=[valid])
        return subs + (wrong(none=None) if self.required else [])

    def random(self, valid: Any) -> Strategy:
        return st.one_of(st.integers(), st.floats(), TEXT_AND_CONTAINERS)


# ---------------------------------------------------------------------------------------------
# judging answers


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """TimeoutError after ``seconds`` (in the main thread of a platform with SIGALRM; a NumPy
    kernel finishes its loop first, a Python loop is stopped)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def names_argument(message: str, name: str) -> bool:
    """``name`` as a word of ``message`` ("input's" names input; "kernel_size" not size)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def same_answer(a: Any, b: Any) -> bool:
    """Equal bit for bit: arrays by type, dtype, shape and bytes; containers item by item;
    dataclasses field by field; scalars by type and value (NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        fields = dataclasses.fields(a)
        return all(same_answer(getattr(a, f.name), getattr(b, f.name)) for f in fields)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_answer(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k]) for k in a)
    return bool(a == b or (a != a and b != b))


def short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) < 120 else text[:117] + "..."
