"""The isolation's helper side: the zygote (a fresh interpreter that imports and warms up the
implementation, then forks a helper per request) and what a helper does with each message.
The caller's side is conformance.implementations.isolation."""

from __future__ import annotations

import collections
import collections.abc
import gc
import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from conformance.implementations import wire
from conformance.implementations.calls import STDERR_TAIL, InProcess, RemoteError

# the harness modules the helpers' jobs run (conformance.campaign.judging and what it imports)
PRELOAD = ("conformance.campaign.judging", "conformance.judge.history", "conformance.judge.invalid")


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


def remove_logs(logs: Path) -> None:
    """The helpers' log directory and what is in it, if still there."""
    for path in logs.glob("*"):
        path.unlink(missing_ok=True)
    try:
        logs.rmdir()
    except OSError:
        pass


def _serve(connection: Connection, implementation: Any) -> None:
    """Answer until the caller hangs up. ('call', attribute, args, kwargs): one call, answered
    ('ok', result, arrays updated in place, the call's own seconds) or ('raised', exception).
    ('job', target,
    arguments, shared): ``target(runner, state, *arguments)`` ('module:function'), where
    ``runner`` is the implementation remembering its calls and ``state`` what the caller
    shared with this process (``shared`` adds to it); a generator's items are streamed
    (('item', item) each, then ('done',)). ('platform',): what decides the code path."""
    from conformance.implementations.code_paths import platform_facts

    runner = InProcess(implementation)
    state: dict[str, Any] = {}
    while True:
        try:
            message = wire.receive(connection)
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
                        wire.send(connection, ("item", item))
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
                reply = ("ok", result, updated, runner.last_seconds)
        except BaseException as error:
            reply = ("raised", _portable(error))
        try:
            wire.send(connection, reply)
        except Exception as error:  # a result that does not pickle
            wire.send(connection, ("raised", RemoteError(type(error).__name__, str(error))))


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
    # the loaded modules and the warm implementation, out of the collector's sight: a child's
    # collections neither walk them nor write to their pages, which it shares with the zygote
    gc.freeze()
    logs = Path(str(options["logs"]))
    children: set[int] = set()
    while True:
        command = _receive_command(control)
        if not command:  # the caller is gone (closed, or killed): so are its children
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            remove_logs(logs)  # a killed caller cannot
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
    "from conformance.implementations.zygote import zygote_main; zygote_main(options)"
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
            stderr = log.read_text(errors="replace")[-STDERR_TAIL:]
        except OSError:
            stderr = ""
        self._control.send(f"reap {pid}".encode())
        return int(self._control.recv(64) or b"0"), stderr

    def stderr(self) -> str:
        try:
            return (self.logs / "zygote.log").read_text(errors="replace")[-STDERR_TAIL:]
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
