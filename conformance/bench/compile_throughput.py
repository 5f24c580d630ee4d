"""Judged examples per minute through a compiler, with and without several value draws per
compiled configuration (values_per_configuration), side by side in one run.

    python -m conformance.bench.compile_throughput [--impl torch-compile] [--examples 20]
        [--variants 1,5] [--out reports/latest]

Each setting is one campaign (conv2d, max_pool2d and avg_pool2d, float32, forward and
backward, no invalid calls, the same seed, no example database), run one after the other in
fresh processes on the same machine; the table gives the wall time, the examples judged, the
distinct configurations among them (config and shapes, values aside) and examples per
minute. The settings alternate when --rounds > 1, so a change in the machine's load falls
on both.
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

OPS = "conv2d,max_pool2d,avg_pool2d"


def campaign(impl: str, setting: str, examples: int, seed: int, out: Path) -> dict[str, float]:
    """One campaign's figures: wall seconds, examples, distinct configurations. ``setting``:
    values per configuration, with a trailing 'd' for shapes marked dynamic (torch.compile
    keeps one graph across sizes: CONFORMANCE_COMPILE_DYNAMIC=1)."""
    import pandas as pd

    environment = {
        **os.environ,
        # a cold compile cache for each campaign: a warm one (an earlier campaign's graphs,
        # the same seed's configurations) would time the cache, not the compiler
        "TORCHINDUCTOR_CACHE_DIR": str(out.with_name(out.name + "-inductor-cache")),
        "CONFORMANCE_VALUES_PER_CONFIGURATION": setting.rstrip("d"),
        "CONFORMANCE_COMPILE_DYNAMIC": "1" if setting.endswith("d") else "0",
    }
    command = [sys.executable, "-m", "conformance", "run", "--impl", impl, "--ops", OPS,
               "--dtypes", "float32", "--profile", "quick", "--max-examples", str(examples),
               "--min-examples", "0", "--seed", str(seed), "--database", "none",
               "--out", str(out), "-n", "1", "--", "-k", "forward or backward"]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, env=environment, capture_output=True, check=False)
    wall = time.perf_counter() - began
    frame = pd.read_parquet(out / "results.parquet")
    configurations = {repr(ast.literal_eval(key)[:2]) for key in frame["example_key"]}
    judged = frame["verdict"].isin(["pass", "widened", "known", "unsupported"])
    return {
        "wall": wall,
        "examples": len(frame),
        "configurations": len(configurations),
        "not passed": int((~judged).sum()),  # failures and hangs shrink: not a fair rate
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
                    campaign(options.impl, variants, options.examples, options.seed, out)
                )
    lines = [
        f"# Compile amortization: {options.impl}, {OPS}, float32, forward and backward",
        "",
        f"--max-examples {options.examples}, seed {options.seed}, one worker, "
        f"{options.rounds} round(s), load {os.getloadavg()[0]:.1f} at the end",
        "",
        "| values per configuration ('d': dynamic shapes) | wall (s) | examples | "
        "configurations | not passed | examples/min |",
        "|---|---|---|---|---|---|",
    ]
    for variants, runs in rows.items():
        wall = sum(r["wall"] for r in runs)
        examples = sum(r["examples"] for r in runs)
        configurations = sum(r["configurations"] for r in runs)
        failing = sum(r["not passed"] for r in runs)
        lines.append(
            f"| {variants} | {wall:.0f} | {examples:.0f} | {configurations:.0f} | {failing:.0f} "
            f"| {60 * examples / wall:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "compile_throughput.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
