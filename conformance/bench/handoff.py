"""What a call's trip to an isolation helper and back costs in CPU: the messages as
conformance.implementations.wire writes them, against multiprocessing's own pickling
(Connection.send, .poll, .recv), interleaved call by call in one process so that both meet
the same machine.

    python -m conformance.bench.handoff [--calls 3000] [--out reports/latest]

Each side has a forked echo helper that reads a message and answers a fixed reply, as the
isolation's helper does with a call (a small float64 conv2d's arguments there, its result or
gradients back); the CPU time of caller and helper per trip is what the table shows, without
any call in between. Writes ``handoff.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from conformance.bench.measure import publish
from conformance.implementations import wire
from conformance.implementations.isolation import _cpu_seconds

SIDES = ("multiprocessing", "wire")


def messages() -> dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(call message, reply) of a conv2d forward and backward, float64, batch 2."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 9, 9)), rng.standard_normal((6, 4, 3, 3))
    grad = rng.standard_normal((2, 6, 9, 9))
    config = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}
    return {
        "conv2d forward": (("call", "conv2d", (x, w, None), config), ("ok", grad.copy(), {}, 0.0)),
        "conv2d backward": (
            ("call", "conv2d_backward", (grad, x, w, None), config),
            ("ok", (x.copy(), w.copy()), {}, 0.0),
        ),
    }


def _echo(connection: Connection, side: str, reply: tuple[Any, ...]) -> None:
    while True:
        try:
            if side == "wire":
                wire.receive(connection)
                wire.send(connection, reply)
            else:
                connection.recv()
                connection.send(reply)
        except (EOFError, OSError):
            os._exit(0)


def _helper_seconds(pid: int) -> float:
    """The helper's CPU seconds so far (isolation's reading of /proc, which this bench needs)."""
    seconds = _cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError("the hand-off bench reads a helper's CPU time from /proc: none here")
    return seconds


def measure(message: tuple[Any, ...], reply: tuple[Any, ...], calls: int) -> dict[str, Any]:
    """Microseconds of CPU per trip, caller's and helper's, for each side."""
    helpers: dict[str, tuple[int, Connection, wire.Waiter]] = {}
    for side in SIDES:
        mine, theirs = socket.socketpair()
        caller, helper = Connection(mine.detach()), Connection(theirs.detach())
        pid = os.fork()
        if pid == 0:  # the helper holds no other helper's caller end (or it never sees EOF)
            caller.close()
            for _, other, _ in helpers.values():
                other.close()
            _echo(helper, side, reply)
        helper.close()
        helpers[side] = (pid, caller, wire.Waiter(caller))
    spent = dict.fromkeys(SIDES, 0.0)
    began = {side: _helper_seconds(pid) for side, (pid, _, _) in helpers.items()}
    try:
        for index in range(calls):
            for side in SIDES if index % 2 else SIDES[::-1]:
                _, caller, waiter = helpers[side]
                start = time.process_time()
                if side == "wire":
                    wire.send(caller, message)
                    waiter.ready(5.0)
                    wire.receive(caller)
                else:
                    caller.send(message)
                    caller.poll(5.0)
                    caller.recv()
                spent[side] += time.process_time() - start
        helper_cpu = {
            side: _helper_seconds(pid) - began[side] for side, (pid, _, _) in helpers.items()
        }
    finally:
        for pid, caller, _ in helpers.values():
            caller.close()
            os.waitpid(pid, 0)
    row: dict[str, Any] = {}
    for side in SIDES:
        row[f"{side} caller (us)"] = 1e6 * spent[side] / calls
        row[f"{side} helper (us)"] = 1e6 * helper_cpu[side] / calls
        row[f"{side} total (us)"] = row[f"{side} caller (us)"] + row[f"{side} helper (us)"]
    row["wire / multiprocessing"] = row["wire total (us)"] / row["multiprocessing total (us)"]
    return row


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m conformance.bench.handoff")
    parser.add_argument("--calls", type=int, default=3000, help="trips per side and message")
    parser.add_argument("--out", type=Path, default=Path("reports/latest"))
    options = parser.parse_args(argv)
    if options.calls < 1:
        parser.error(f"--calls must be at least 1, got {options.calls}")
    rows = {
        name: measure(message, reply, options.calls)
        for name, (message, reply) in messages().items()
    }
    table = pd.DataFrame(rows).T.round(2)
    text = "\n".join([
        "# A call's trip to an isolation helper and back (CPU per trip)",
        "",
        f"{options.calls:,} trips per side and message, the sides interleaved; load "
        f"{os.getloadavg()[0]:.1f} at the end. The helper's time is read from /proc in clock "
        f"ticks ({os.sysconf('SC_CLK_TCK')} a second).",
        "",
        table.to_markdown(),
        "",
    ])  # fmt: skip
    publish(text, options.out / "handoff.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
