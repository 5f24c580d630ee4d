"""Judged examples per minute through a compiler, with and without several value draws per
compiled configuration (values_per_configuration), side by side in one run.

    python -m conformance.bench.compile_throughput [--impl torch-compile] [--examples 20]
        [--variants 1,5] [--out reports/latest]

Each setting is one campaign (conv2d, max_pool2d and avg_pool2d, float32, forward and
backward, no invalid calls, the same seed, no example database), run one after the other in
fresh processes on the same machine; the table gives the wall time, the examples judged, the
distinct configurations among them (config and shapes, values aside) and examples per
minute. The settings alternate when --rounds > 1, so a change in the machine's load falls
on both. Two workers by default: the target is examples per minute on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from conformance.bench.measure import publish

OPS = "conv2d,max_pool2d,avg_pool2d"


def campaign(
    impl: str, setting: str, examples: int, seed: int, out: Path, workers: int
) -> dict[str, float]:
    """One campaign's figures: wall seconds, examples, distinct configurations, and the
    seconds the compiler spent (calls that compiled a new graph, from the adapter's compile
    log). ``setting``: values per configuration, with a trailing 'd' for shapes marked
    dynamic (torch.compile keeps one graph across sizes: CONFORMANCE_COMPILE_DYNAMIC=1)."""
    import json

    import pandas as pd

    environment = {
        **os.environ,
        # a cold compile cache for each campaign: a warm one (an earlier campaign's graphs,
        # the same seed's configurations) would time the cache, not the compiler
        "TORCHINDUCTOR_CACHE_DIR": str(out.with_name(out.name + "-inductor-cache")),
        "CONFORMANCE_VALUES_PER_CONFIGURATION": setting.rstrip("d"),
        "CONFORMANCE_COMPILE_DYNAMIC": "1" if setting.endswith("d") else "0",
        "CONFORMANCE_COMPILE_LOG": str(out.with_name(out.name + "-compile.jsonl")),
    }
    command = [sys.executable, "-m", "conformance", "run", "--impl", impl, "--ops", OPS,
               "--dtypes", "float32", "--profile", "quick", "--max-examples", str(examples),
               "--min-examples", "0", "--seed", str(seed), "--database", "none",
               "--out", str(out), "-n", str(workers),
               # forward and backward only: double backward is unsupported under
               # torch.compile (AOT autograd), and its instant 'unsupported' rows would count
               # as judged examples (they made an earlier run's rate look a third higher)
               "--", "-k", "(forward or backward) and not double_backward"]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, env=environment, capture_output=True, check=False)
    wall = time.perf_counter() - began
    frame = pd.read_parquet(out / "results.parquet")
    # a configuration: the op's config and shapes in one direction (each direction compiles
    # its own graphs); the same one met in the forward and the backward group counts twice
    configurations = {
        (op, direction, repr(ast.literal_eval(key)[:2]))
        for op, direction, key in zip(
            frame["op"], frame["direction"], frame["example_key"], strict=True
        )
    }
    judged = frame["verdict"].isin(["pass", "widened", "known"])
    log = out.with_name(out.name + "-compile.jsonl")
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {
        "wall": wall,
        "examples": len(frame),
        "configurations": len(configurations),
        # failures and hangs shrink, unsupported examples cost nothing: not a fair rate
        "not passed": int((~judged).sum()),
        "compiling": sum(c["seconds"] for c in calls if c.get("graphs")),
        "compiles": sum(1 for c in calls if c.get("graphs")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.bench.compile_throughput")
    parser.add_argument("--impl", default="torch-compile")
    parser.add_argument("--examples", type=int, default=20, help="per group (--max-examples)")
    parser.add_argument(
        "--variants",
        default="1,5,5d",
        help="values per configuration to compare; 'd': with dynamic shapes",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=2, help="campaign workers (-n); the target is on 2 cores"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/latest"))
    options = parser.parse_args(argv)
    settings = options.variants.split(",")
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in settings}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(options.rounds):
            for variants in settings:
                out = Path(scratch) / f"v{variants}-r{round_}"
                rows[variants].append(
                    campaign(
                        options.impl,
                        variants,
                        options.examples,
                        options.seed,
                        out,
                        options.workers,
                    )
                )
    lines = [
        f"# Compile amortization: {options.impl}, {OPS}, float32, forward and backward",
        "",
        f"--max-examples {options.examples}, seed {options.seed}, {options.workers} "
        f"worker(s), {options.rounds} round(s), load {os.getloadavg()[0]:.1f} at the end",
        "",
        "compiling: seconds of the calls that compiled a new graph, summed over workers (its "
        "share of the workers' time is what amortization can still remove); per compile: "
        "those seconds over the graphs compiled.",
        "",
        "| values per configuration ('d': dynamic shapes) | wall (s) | examples | "
        "configurations | not passed | compiling (s) | per compile (s) | examples/min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variants, runs in rows.items():
        wall = sum(r["wall"] for r in runs)
        examples = sum(r["examples"] for r in runs)
        configurations = sum(r["configurations"] for r in runs)
        failing = sum(r["not passed"] for r in runs)
        compiling = sum(r["compiling"] for r in runs)
        compiles = max(1.0, sum(r["compiles"] for r in runs))
        lines.append(
            f"| {variants} | {wall:.0f} | {examples:.0f} | {configurations:.0f} | {failing:.0f} "
            f"| {compiling:.0f} | {compiling / compiles:.2f} | {60 * examples / wall:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    publish(text, options.out / "compile_throughput.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
