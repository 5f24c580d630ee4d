"""Where one example's check spends its time, step by step, on a campaign's own examples.

    python -m conformance.bench.check_profile [--profile ci] [--impl torch] [--ops A,B]
        [--seed 1] [--workers 1] [--out reports/latest]

Runs the campaign with ``CONFORMANCE_STEP_PROFILE=1`` (conformance.judge.steps: each row
carries the seconds of its steps: prepare, oracle, call, hand-off, bound, measure, verdict),
no example database, and writes ``check_profile.md``: per step, milliseconds per example and
share of the checks' time, over all examples and per op; the check's cost per example (the
rows' seconds, which is what the steps split) beside the workers' whole time per example
(Hypothesis, the recording, start-up and pytest included, from the run's time split). One
worker by default, so the figures are one core's and the machine's other core stays free for
its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.bench.measure import publish
from conformance.judge.steps import STEPS

CHECK = "check (the rows' seconds)"


def step_frame(frame: Any) -> Any:
    """One column of seconds per step (0 where a row's example never reached it), indexed
    like ``frame``."""
    import pandas as pd

    parsed = [json.loads(text) if text else {} for text in frame["step_seconds"].fillna("")]
    steps = pd.DataFrame(parsed, index=frame.index).reindex(columns=list(STEPS)).fillna(0.0)
    return steps


def profile_tables(frame: Any) -> tuple[Any, Any]:
    """(overall, per op): milliseconds per example of each step and of the check as a
    whole (the rows' seconds), with each step's share of it."""
    import pandas as pd

    steps = step_frame(frame)
    examples = len(frame)
    check = float(frame["seconds"].sum())
    overall = pd.DataFrame(
        {
            "ms per example": 1e3 * steps.sum() / examples,
            "share of the check": steps.sum() / check,
        }
    )
    overall.loc["(unaccounted)"] = [
        1e3 * (check - float(steps.to_numpy().sum())) / examples,
        1 - float(steps.to_numpy().sum()) / check,
    ]
    overall.loc[CHECK] = [1e3 * check / examples, 1.0]
    by_op = (1e3 * steps.groupby(frame["op"]).mean()).round(3)
    by_op["check"] = (1e3 * frame.groupby("op")["seconds"].mean()).round(3)
    by_op.insert(0, "examples", frame.groupby("op").size())
    return overall, by_op.sort_values("check", ascending=False)


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m conformance.bench.check_profile")
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--impl", default="torch")
    parser.add_argument("--ops", default="", help="comma-separated ops (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("reports/latest"))
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        command = [sys.executable, "-m", "conformance", "run", "--profile", options.profile,
                   "--impl", options.impl, "--seed", str(options.seed), "--database", "none",
                   "--min-examples", "0", "-n", str(options.workers),
                   "--out", str(run)]  # fmt: skip
        if options.ops:
            command += ["--ops", options.ops]
        began = time.perf_counter()
        subprocess.run(command, env={**os.environ, "CONFORMANCE_STEP_PROFILE": "1"}, check=False)
        wall = time.perf_counter() - began
        frame = pd.read_parquet(run / "results.parquet")
        header = json.loads((run / "header.json").read_text(encoding="utf-8"))
    measured = frame[frame["step_seconds"].fillna("") != ""] if "step_seconds" in frame else frame
    if measured.empty:
        print("no row carries step seconds: nothing was judged", file=sys.stderr)
        return 1
    overall, by_op = profile_tables(measured)
    worker = float(header.get("worker-seconds") or 0.0)
    lines = [
        f"# Check profile: {options.impl}, --profile {options.profile}, seed {options.seed}",
        "",
        f"{len(measured):,} examples judged with their steps timed ({len(frame):,} rows), "
        f"{options.workers} worker(s), wall {wall:.0f} s, load {os.getloadavg()[0]:.1f} at "
        f"the end; torch {header.get('torch', '?')}, {header.get('platform', '?')}.",
        "",
        f"- check per example (the rows' seconds): {overall.loc[CHECK, 'ms per example']:.3f} ms",
        f"- worker time per example (everything: start-up, Hypothesis, recording): "
        f"{1e3 * worker / max(len(frame), 1):.3f} ms",
        f"- time split: {header.get('time split (worker-seconds)', '?')}",
        "",
        "## By step",
        "",
        overall.round(4).to_markdown(),
        "",
        "## By op (ms per example)",
        "",
        by_op.to_markdown(),
        "",
    ]
    text = "\n".join(lines)
    publish(text, options.out / "check_profile.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
