"""Implementation calls in a process of their own: a call that kills its process (a signal,
an abort, an out-of-memory kill) or outlives its time limit is a verdict, not a lost run.

A zygote, a fresh interpreter that has imported the implementation (and the caps of its
code path, ``ONEDNN_MAX_CPU_ISA`` and the like, set before it did) and warmed it up (the
implementation's ``warm_up()``, where it has one: torch's first backward in a process costs
0.4 s, in a forked child of a warm zygote 20 ms), forks the processes that make the calls:
one long-lived helper for the ordinary calls, respawned in a few milliseconds after it
dies, and a second one, the quarantine, for the calls the baseline says damage the memory
of their process (its ``isolate`` entries), so that the damage reaches none of the other
calls; the campaign restarts a helper after a call of it fails. The caller talks to a child
over a socket, pickling the arguments and the results (conformance.implementations.wire);
arrays an op updates in place travel back. A call's trip costs about 0.2 ms of CPU, caller
and helper together (a small float64 conv2d on a 2-core VM), on top of the call itself; a
campaign pays a trip per batch of examples (conformance.campaign.judging runs their checks in
the helper) and a row's way back per example.

``InProcess`` gives an implementation the same interface
without isolation (``--isolation none``, the model command): calls made in the caller's own
process.

Both remember the calls made in the process that made the last one (``history``),
so that a result that depends on what ran before can be replayed as a sequence.
"""

from __future__ import annotations

import collections
import collections.abc
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from conformance.implementations.calls import (
    MAIN,
    QUARANTINE,
    Call,
    CallCrashed,
    CallHung,
    InProcess,
    ProcessDied,
    RemoteError,
    _Remembering,
    describe_status,
    error_name,
    is_call,
)
from conformance.implementations.wire import Waiter, receive, send
from conformance.implementations.zygote import _Zygote, remove_logs

__all__ = [
    "Call",
    "CallCrashed",
    "CallHung",
    "InProcess",
    "Isolated",
    "ProcessDied",
    "RemoteError",
    "describe_status",
    "error_name",
]

DEFAULT_TIME_LIMIT_S = 5.0  # the slowest call of a ci campaign: 0.17 s (2.3 s once, loaded)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            text = stream.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the fields after the command's name


def _cpu_seconds(pid: int) -> float | None:
    """The process's user and system CPU time (Linux's /proc), None where there is none."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _state(pid: int) -> str:
    """R running or runnable, S sleeping, D in the kernel, Z dead; '' when unknown."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def _stack(pid: int) -> str:
    """The hung process's Python stack, innermost call last (py-spy, where installed: ''
    elsewhere)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return ""
    try:
        done = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    frames = [line.strip() for line in done.stdout.splitlines() if line.startswith("    ")]
    return " <- ".join(frames[:6])


def _answer(reply: tuple[Any, ...], args: Sequence[Any]) -> Any:
    """A helper's reply as the call's result (or its exception); arrays the call updated in
    place get their new values."""
    if reply[0] == "raised":
        raise reply[1]
    result, updated = reply[1:3]
    for index, array in updated.items():
        np.copyto(args[index], array)
    return result


# zygotes started ahead of their first call (start_zygote), each taken by the first Isolated
# of its implementation that forks; one never taken ends with this process (it exits when
# its caller's end of the socket closes, and removes its logs)
_STARTED: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], tuple[_Zygote, Path]] = {}


def _key(
    spec: str, device: str | None, environment: Mapping[str, str]
) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
    return spec, device, tuple(sorted(environment.items()))


def start_zygote(spec: str, device: str | None, environment: Mapping[str, str]) -> None:
    """Start now the zygote that the first Isolated(spec, device, environment) of this process
    will fork its helpers from: it imports the implementation (torch, a framework: seconds)
    while this process goes on with its own start-up, instead of after it."""
    key = _key(spec, device, environment)
    if key not in _STARTED:
        logs = Path(tempfile.mkdtemp(prefix="conformance-isolation-"))
        _STARTED[key] = (_Zygote(spec, device, dict(environment), logs), logs)


class Isolated(_Remembering):
    """An implementation (``local``, loaded in this process for what describes it: name,
    dtypes, repro lines) whose calls run in helper processes loaded from ``spec`` with
    ``environment`` set before anything is imported."""

    isolated = True

    def __init__(
        self,
        spec: str,
        local: Any,
        device: str | None = None,
        environment: Mapping[str, str] | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT_S,
    ) -> None:
        super().__init__()
        self.implementation = local
        self.spec = spec
        self.device = device
        self.environment = dict(environment or {})
        self.time_limit = float(time_limit)
        # the helpers' standard error, made when the first helper starts (an implementation
        # never called makes none); the zygote removes it when its caller is gone, killed too
        self._logs: Path | None = None
        self._zygote: _Zygote | None = None
        self._helpers: dict[str, tuple[int, Connection] | None] = {MAIN: None, QUARANTINE: None}
        self._shared: dict[str, dict[str, Any]] = {MAIN: {}, QUARANTINE: {}}
        self._platform: dict[str, Any] | None = None
        self._waiters: dict[int, Waiter] = {}  # per helper's pid, while it lives

    def __getattr__(self, name: str) -> Any:
        local = self.__dict__["implementation"]
        if is_call(name):
            return lambda *args, **kwargs: self.call(name, args, kwargs)
        return getattr(local, name)

    def _fork(self) -> tuple[int, Connection]:
        if self._zygote is None:  # one started ahead for this implementation, if any
            self._zygote, self._logs = _STARTED.pop(
                _key(self.spec, self.device, self.environment), (None, self._logs)
            )
        if self._zygote is None or not self._zygote.alive():
            if self._logs is None:
                self._logs = Path(tempfile.mkdtemp(prefix="conformance-isolation-"))
            self._zygote = _Zygote(self.spec, self.device, self.environment, self._logs)
        return self._zygote.fork()

    def _end(self, pid: int, connection: Connection, kill: bool = False) -> tuple[int, str]:
        self._waiters.pop(pid, None)
        connection.close()
        if kill:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self._zygote is not None
        return self._zygote.reap(pid)

    def _exchange(self, pid: int, connection: Connection, message: tuple[Any, ...]) -> Any:
        """Send one message (none: ``()``) and wait for the next answer; a dead or silent
        child raises ProcessDied (and is reaped)."""
        try:
            if message:
                send(connection, message)
            answered = self._wait(pid, connection)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            answered = True  # died before or while reading: recv says so
        if not answered:
            where = _stack(pid)  # where it hung, before it is killed
            self._end(pid, connection, kill=True)
            raise CallHung(self.time_limit, where)
        try:
            reply = receive(connection)
        except (EOFError, OSError):
            status, stderr = self._end(pid, connection)
            raise CallCrashed(status, stderr) from None
        return reply

    def _wait(self, pid: int, connection: Connection) -> bool:
        """Whether the child answers before it hangs. Hung means: the time limit passed while
        it slept (a deadlock, a sleep), or it has spent the time limit's worth of CPU (a loop).
        A child that is runnable but starved of CPU (a loaded machine: four processes on two
        cores) is waited for, up to ten times the limit: it is slow, not hung."""
        waiter = self._waiters.get(pid)
        if waiter is None:
            waiter = self._waiters[pid] = Waiter(connection)
        if waiter.ready(self.time_limit):
            return True
        started = _cpu_seconds(pid)
        if started is None:  # no /proc: wall-clock time alone decides
            return False
        waited = self.time_limit
        while waited < 10 * self.time_limit:
            used = (_cpu_seconds(pid) or 0.0) - started
            if _state(pid) not in ("R", "D") or used >= self.time_limit:
                return False
            if waiter.ready(1.0):
                return True
            waited += 1.0
        return False

    def call(
        self,
        attribute: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        quarantine: bool = False,
    ) -> Any:
        """``getattr(implementation, attribute)(*args, **kwargs)`` in the helper (with
        ``quarantine``: in the helper kept for the calls that damage their process, so that
        the damage reaches none of the others)."""
        role = QUARANTINE if quarantine else MAIN
        pid, connection = self._helper(role)
        self._remember(attribute, args, kwargs, role)
        self.last_seconds = None
        try:
            reply = self._exchange(pid, connection, ("call", attribute, tuple(args), dict(kwargs)))
        except ProcessDied:
            self._helpers[role] = None
            raise
        if reply[0] == "ok":
            self.last_seconds = reply[3]  # timed in the helper
        return _answer(reply, args)

    def _helper(self, role: str) -> tuple[int, Connection]:
        helper = self._helpers.get(role)
        if helper is None:
            helper = self._helpers[role] = self._fork()
            self._shared[role] = {}
            self._forget(role)  # a new process: what ran before ran elsewhere
        self._last = role
        return helper

    def stream(
        self,
        target: str,
        arguments: tuple[Any, ...],
        shared: Mapping[str, Any] | None = None,
        quarantine: bool = False,
    ) -> collections.abc.Iterator[Any]:
        """``target(runner, state, *arguments)`` run in the helper ('module:function'; the
        runner the helper's implementation, ``state`` what ``shared`` gave it, sent once per
        process), its items one by one as they come: the helper works while the caller waits
        once. A helper that dies or stays silent past the time limit raises ProcessDied
        (what came before it came); a stream left unfinished ends its helper."""
        role = QUARANTINE if quarantine else MAIN
        pid, connection = self._helper(role)
        sent = self._shared[role]
        fresh = {k: v for k, v in (shared or {}).items() if sent.get(k) is not v}
        sent.update(fresh)
        message: tuple[Any, ...] = ("job", target, arguments, fresh)
        finished = False
        try:
            while True:
                try:
                    reply = self._exchange(pid, connection, message)
                except ProcessDied:
                    self._helpers[role] = None
                    finished = True
                    raise
                message = ()
                if reply[0] == "item":
                    yield reply[1]
                    continue
                finished = True
                if reply[0] == "raised":
                    raise reply[1]
                if reply[0] == "ok":
                    yield reply[1]
                return
        finally:
            if not finished:  # the caller stopped reading: the helper is out of step
                self.restart()

    def restart(self) -> None:
        """End the helper that made the last call: the next call starts a fresh process.
        After a failure, so that what the failure left behind (a poisoned cache, a damaged
        heap) does not reach the calls after it, and the history of the next failure is its
        own."""
        helper = self._helpers.get(self._last)
        if helper is not None:
            self._helpers[self._last] = None
            self._end(*helper, kill=True)

    def platform(self) -> dict[str, Any]:
        """What decides the implementation's code path, as its helper process sees it (asked
        of a child of its own, which ends with the answer)."""
        if self._platform is None:
            pid, connection = self._fork()
            reply = self._exchange(pid, connection, ("platform",))
            self._end(pid, connection)
            self._platform = dict(_answer(reply, ()))
        return self._platform

    def close(self) -> None:
        for role, helper in self._helpers.items():
            if helper is not None:
                self._helpers[role] = None
                self._end(*helper, kill=True)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        if self._logs is not None:
            remove_logs(self._logs)
            self._logs = None
