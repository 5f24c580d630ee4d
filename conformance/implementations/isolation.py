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
over a socket, pickling the arguments and the results (about 0.1-0.3 ms a call); arrays an
op updates in place travel back.

``InProcess`` gives an implementation the same interface
without isolation (``--isolation none``, the model command): calls made in the caller's own
process.

Both remember the calls made in the process that made the last one (``history``),
so that a result that depends on what ran before can be replayed as a sequence.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

# calls remembered before the last one: the sequence a history-dependent repro replays
HISTORY = 8
DEFAULT_TIME_LIMIT_S = 5.0  # the slowest call of a ci campaign: 0.17 s (2.3 s once, loaded)
_STDERR_TAIL = 600  # characters of a dead child's standard error kept in its verdict
# the harness modules the helpers' jobs run (conformance.judging and what it imports)
PRELOAD = ("conformance.judging", "conformance.history", "conformance.invalid")


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

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"the call did not return within its time limit of {seconds:g} s (the process "
            "was killed)"
        )


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
    tail = stderr.strip()[-_STDERR_TAIL:]
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
        if quarantine and self.quarantine is not None:
            self._last = QUARANTINE
            return self.quarantine.call(attribute, args, kwargs, quarantine=True)
        self._remember(attribute, args, kwargs)
        return getattr(self.implementation, attribute)(*args, **kwargs)

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


def _portable(error: BaseException) -> BaseException:
    """The exception itself where it pickles, else a RemoteError carrying its name (so too
    for what is not an Exception: a SystemExit must not end the caller)."""
    if not isinstance(error, Exception):
        return RemoteError(type(error).__name__, str(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RemoteError(type(error).__name__, str(error))
    return error


def _serve(connection: Connection, implementation: Any) -> None:
    """Answer until the caller hangs up. ('call', attribute, args, kwargs): one call, answered
    ('ok', result, arrays updated in place) or ('raised', exception). ('job', target,
    arguments, shared): ``target(runner, state, *arguments)`` ('module:function'), where
    ``runner`` is the implementation remembering its calls and ``state`` what the caller
    shared with this process (``shared`` adds to it); a generator's items are streamed
    (('item', item) each, then ('done',)). ('platform',): what decides the code path."""
    from conformance.implementations.code_paths import platform_facts

    runner = InProcess(implementation)
    state: dict[str, Any] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        try:
            if message[0] == "platform":
                reply: tuple[Any, ...] = ("ok", platform_facts(implementation), {})
            elif message[0] == "job":
                _, target, arguments, shared = message
                state.update(shared)
                module, _, name = target.partition(":")
                result = getattr(importlib.import_module(module), name)(runner, state, *arguments)
                if isinstance(result, collections.abc.Iterator):
                    for item in result:
                        connection.send(("item", item))
                    reply = ("done",)
                else:
                    reply = ("ok", result, {})
            else:
                _, attribute, args, kwargs = message
                before = {
                    index: value.tobytes()
                    for index, value in enumerate(args)
                    if isinstance(value, np.ndarray) and value.flags.writeable
                }
                result = runner.call(attribute, args, kwargs)
                updated = {i: args[i] for i, data in before.items() if args[i].tobytes() != data}
                reply = ("ok", result, updated)
        except BaseException as error:
            reply = ("raised", _portable(error))
        try:
            connection.send(reply)
        except Exception as error:  # a result that does not pickle
            connection.send(("raised", RemoteError(type(error).__name__, str(error))))


def _receive_command(control: socket.socket) -> bytes:
    try:
        return control.recv(64)
    except OSError:
        return b""


def zygote_main(options: Mapping[str, Any]) -> None:
    """The zygote: load the implementation (never call it), then fork a child per request
    ('fork': the child's pid and one end of its socket back; 'reap PID': its wait status)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    control = socket.socket(fileno=int(options["fd"]))
    from conformance.implementations import load_implementation

    implementation = load_implementation(str(options["spec"]), device=options.get("device"))
    for module in PRELOAD:  # what the jobs run, imported once here rather than in each child
        importlib.import_module(module)
    warm_up = getattr(implementation, "warm_up", None)
    if callable(warm_up):  # what every child would otherwise pay on its first call
        warm_up()
    logs = Path(str(options["logs"]))
    children: set[int] = set()
    while True:
        command = _receive_command(control)
        if not command:  # the caller is gone: so are its children
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os._exit(0)
        if command == b"fork":
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                control.close()
                mine.close()
                log = os.open(logs / f"{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(log, 2)
                os.close(log)
                try:
                    _serve(Connection(theirs.detach()), implementation)
                finally:
                    os._exit(0)
            theirs.close()
            children.add(pid)
            socket.send_fds(control, [str(pid).encode()], [mine.fileno()])
            mine.close()
        elif command.startswith(b"reap "):
            pid = int(command.split()[1])
            _, status = os.waitpid(pid, 0)
            children.discard(pid)
            (logs / f"{pid}.log").unlink(missing_ok=True)
            control.sendall(str(status).encode())


_BOOT = (
    "import json, sys; options = json.loads(sys.argv[1]); sys.path[:0] = options['path']; "
    "from conformance.implementations.isolation import zygote_main; zygote_main(options)"
)


# ---------------------------------------------------------------------------------------
# the caller's side


class _Zygote:
    def __init__(
        self, spec: str, device: str | None, environment: Mapping[str, str], logs: Path
    ) -> None:
        self.logs = logs
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        options = {
            "fd": theirs.fileno(),
            "spec": spec,
            "device": device,
            "logs": str(logs),
            "path": [entry or os.getcwd() for entry in sys.path],
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(options)],
            pass_fds=[theirs.fileno()],
            env={**os.environ, **environment},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / "zygote.log", "wb"),
        )
        theirs.close()

    def fork(self) -> tuple[int, Connection]:
        self._control.send(b"fork")
        message, fds, _, _ = socket.recv_fds(self._control, 64, 1)
        if not message or not fds:
            raise RuntimeError(f"the helper process could not start: {self.stderr()}")
        return int(message), Connection(fds[0])

    def reap(self, pid: int) -> tuple[int, str]:
        """The child's wait status and the end of what it wrote to standard error."""
        log = self.logs / f"{pid}.log"
        try:
            stderr = log.read_text(errors="replace")[-_STDERR_TAIL:]
        except OSError:
            stderr = ""
        self._control.send(f"reap {pid}".encode())
        return int(self._control.recv(64) or b"0"), stderr

    def stderr(self) -> str:
        try:
            return (self.logs / "zygote.log").read_text(errors="replace")[-_STDERR_TAIL:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self._control.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _answer(reply: tuple[Any, ...], args: Sequence[Any]) -> Any:
    """A helper's reply as the call's result (or its exception); arrays the call updated in
    place get their new values."""
    if reply[0] == "raised":
        raise reply[1]
    _, result, updated = reply
    for index, array in updated.items():
        np.copyto(args[index], array)
    return result


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
        self._logs = Path(tempfile.mkdtemp(prefix="conformance-isolation-"))
        self._zygote: _Zygote | None = None
        self._helpers: dict[str, tuple[int, Connection] | None] = {MAIN: None, QUARANTINE: None}
        self._shared: dict[str, dict[str, Any]] = {MAIN: {}, QUARANTINE: {}}
        self._platform: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        local = self.__dict__["implementation"]
        if is_call(name):
            return lambda *args, **kwargs: self.call(name, args, kwargs)
        return getattr(local, name)

    def _fork(self) -> tuple[int, Connection]:
        if self._zygote is None or not self._zygote.alive():
            self._zygote = _Zygote(self.spec, self.device, self.environment, self._logs)
        return self._zygote.fork()

    def _end(self, pid: int, connection: Connection, kill: bool = False) -> tuple[int, str]:
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
                connection.send(message)
            answered = connection.poll(self.time_limit)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            answered = True  # died before or while reading: recv says so
        if not answered:
            self._end(pid, connection, kill=True)
            raise CallHung(self.time_limit)
        try:
            reply = connection.recv()
        except (EOFError, OSError):
            status, stderr = self._end(pid, connection)
            raise CallCrashed(status, stderr) from None
        return reply

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
        try:
            reply = self._exchange(pid, connection, ("call", attribute, tuple(args), dict(kwargs)))
        except ProcessDied:
            self._helpers[role] = None
            raise
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
        for path in self._logs.glob("*"):
            path.unlink(missing_ok=True)
        try:
            self._logs.rmdir()
        except OSError:
            pass
