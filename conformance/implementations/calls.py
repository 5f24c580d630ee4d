"""An implementation's calls as the harness makes them: the verdicts of a process that died
(ProcessDied: a crash or a hang), what an exception that could not travel is called, the calls
remembered per process (the history a repro replays), and InProcess, the runner that makes them
in the caller's own process (conformance.implementations.isolation makes them in helpers)."""

from __future__ import annotations

import collections
import collections.abc
import importlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# calls remembered before the last one: the sequence a history-dependent repro replays
HISTORY = 8
STDERR_TAIL = 600  # characters of a dead child's standard error kept in its verdict


class ProcessDied(Exception):
    """A call whose process ended before it answered: the verdict is the exception's
    ``verdict`` ('crash' or 'hang'), the message its problem."""

    verdict = "crash"


class CallCrashed(ProcessDied):
    def __init__(self, status: int, stderr: str = "") -> None:
        self.status = status
        self.stderr = stderr
        super().__init__(describe_status(status, stderr))


class CallHung(ProcessDied):
    verdict = "hang"

    def __init__(self, seconds: float, where: str = "") -> None:
        self.seconds = seconds
        self.where = where
        text = (
            f"the call did not return within its time limit of {seconds:g} s (the process "
            "was killed)"
        )
        super().__init__(f"{text}; it was in {where}" if where else text)


class RemoteError(Exception):
    """An exception raised in the helper that could not travel back as itself (one that does
    not pickle): its type's name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)


def error_name(error: BaseException) -> str:
    """The exception's type name, as the implementation raised it."""
    return error.type_name if isinstance(error, RemoteError) else type(error).__name__


def describe_status(status: int, stderr: str = "") -> str:
    """A wait status in words: 'SIGSEGV (signal 11)', or the exit code."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        text = f"the call killed its process: {name} (signal {number})"
        if number == signal.SIGKILL:
            text += ", as the kernel's out-of-memory killer does"
    else:
        text = f"the process making the call exited with status {os.WEXITSTATUS(status)}"
    tail = stderr.strip()[-STDERR_TAIL:]
    return f"{text}; its last words: {tail!r}" if tail else text


@dataclass(frozen=True)
class Call:
    """One call made on an implementation: the attribute and what it was given."""

    attribute: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


def _frozen(value: Any) -> Any:
    """A copy of an argument as it was at the call (arrays are copied; tuples of them too)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    return value


MAIN, QUARANTINE = "main", "quarantine"


class _Remembering:
    """The calls made in each process of an implementation (the main helper, the quarantine),
    the last HISTORY + 1 of each."""

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[Call]] = {}
        self._last = MAIN
        # the last call's own seconds, timed where it ran (None: unknown, or it raised)
        self.last_seconds: float | None = None

    def _remember(
        self, attribute: str, args: Sequence[Any], kwargs: Mapping[str, Any], role: str = MAIN
    ) -> None:
        calls = self._calls.setdefault(role, collections.deque(maxlen=HISTORY + 1))
        calls.append(Call(attribute, _frozen(tuple(args)), dict(kwargs)))
        self._last = role

    def _forget(self, role: str = MAIN) -> None:
        self._calls.pop(role, None)

    def history(self) -> list[Call]:
        """The calls made in the same process before the last one, oldest first."""
        return list(self._calls.get(self._last, ()))[:-1]


_OP_NAMES: set[str] = set()


def is_call(attribute: str) -> bool:
    """Whether ``attribute`` names an op call (conv2d, conv2d_backward, ...), not metadata."""
    from conformance.implementations import DIRECTION_SUFFIXES

    if not _OP_NAMES:
        from conformance.catalogue import CATALOGUE

        _OP_NAMES.update(spec.name for spec in CATALOGUE)
    for suffix in DIRECTION_SUFFIXES:
        if attribute.endswith(suffix):
            return attribute.removesuffix(suffix) in _OP_NAMES
    return attribute in _OP_NAMES


class InProcess(_Remembering):
    """An implementation called in the caller's own process (no isolation), but for the
    calls made in quarantine, which ``isolated`` (an Isolated) makes, where given."""

    isolated = False

    def __init__(self, implementation: Any, isolated: Any = None) -> None:
        super().__init__()
        self.implementation = implementation
        self.quarantine = isolated
        self._state: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["implementation"], name)

    def call(
        self,
        attribute: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        quarantine: bool = False,
    ) -> Any:
        self.last_seconds = None
        if quarantine and self.quarantine is not None:
            self._last = QUARANTINE
            result = self.quarantine.call(attribute, args, kwargs, quarantine=True)
            self.last_seconds = self.quarantine.last_seconds
            return result
        self._remember(attribute, args, kwargs)
        began = time.perf_counter()
        result = getattr(self.implementation, attribute)(*args, **kwargs)
        self.last_seconds = time.perf_counter() - began
        return result

    def platform(self) -> dict[str, Any]:
        from conformance.implementations.code_paths import platform_facts

        return platform_facts(self.implementation)

    def stream(
        self,
        target: str,
        arguments: tuple[Any, ...],
        shared: Mapping[str, Any] | None = None,
        quarantine: bool = False,
    ) -> collections.abc.Iterator[Any]:
        """``target(self, state, *arguments)`` here, its items one by one (as Isolated.stream
        does in a helper): in quarantine, in the quarantine's helper."""
        if quarantine and self.quarantine is not None:
            self._last = QUARANTINE
            yield from self.quarantine.stream(target, arguments, shared, quarantine=True)
            return
        self._state.update(shared or {})
        module, _, name = target.partition(":")
        result = getattr(importlib.import_module(module), name)(self, self._state, *arguments)
        yield from result if isinstance(result, collections.abc.Iterator) else (result,)

    def restart(self) -> None:
        """The quarantine restarts; the caller's own process cannot."""
        if self._last == QUARANTINE and self.quarantine is not None:
            self.quarantine.restart()

    def history(self) -> list[Call]:
        if self._last == QUARANTINE and self.quarantine is not None:
            return list(self.quarantine.history())
        return super().history()

    def close(self) -> None:
        if self.quarantine is not None:
            self.quarantine.close()


# ---------------------------------------------------------------------------------------
# the helper's side
