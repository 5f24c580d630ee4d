"""The scoreboard as a standing thing: every built-in implementation at the depth it can
afford, one shard per run, merged into one report whose grid the README shows.

    python -m conformance.campaign.scoreboard                 # every shard, then the merge
    python -m conformance.campaign.scoreboard run jax         # one shard (a CI matrix job)
    python -m conformance.campaign.scoreboard merge --readme README.md

A shard's own exit status (1 on a discrepancy) is not the verdict: the merge is, so that
one failing shard still leaves the others' reports and the merged scoreboard. ``merge``
exits as the merged report does. ``--readme`` replaces the text between the README's two
scoreboard markers with the merged grid, the direction table and each shard's figures, so
the README shows a run, never a typed table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CONV_AND_POOL = (
    "conv1d,conv2d,conv3d,conv_transpose1d,conv_transpose2d,conv_transpose3d,max_pool1d,"
    "max_pool2d,max_pool3d,avg_pool1d,avg_pool2d,avg_pool3d,lp_pool1d,lp_pool2d,"
    "adaptive_avg_pool2d,adaptive_max_pool2d"
)
NO_INVALID = ("--", "-k", "not invalid")


@dataclass(frozen=True)
class Shard:
    """One run of the scoreboard: its implementations, its depth, and why that depth."""

    name: str
    arguments: tuple[str, ...]
    depth: str  # for the README's table of runs


SHARDS = (
    Shard(
        "eager",
        ("--impl", "torch,torch-channels_last,onnxruntime,onnx-reference", "--profile", "quick"),
        "quick (20 per group), every op and dtype",
    ),
    Shard(
        "jax",
        ("--impl", "jax", "--dtypes", "float64,float32,float16", "--profile", "quick",
         "--max-examples", "10"),
        "quick, at most 10 per group (two value draws per configuration), float64/32/16 (XLA "
        "compiles each new configuration)",
    ),
    Shard(
        "decompositions",
        ("--impl", "torch-decompositions", "--ops", CONV_AND_POOL, "--dtypes",
         "float64,float32,float16", "--profile", "quick", "--max-examples", "8", *NO_INVALID),
        "at most 8 per group (two value draws per configuration), conv and pooling, "
        "float64/32/16, no invalid calls",
    ),
    Shard(
        "compile",
        ("--impl", "torch-compile", "--ops",
         "conv2d,conv_transpose2d,max_pool1d,max_pool2d,avg_pool2d,adaptive_avg_pool2d,"
         "conv_bn_relu,conv_max_pool,conv_transpose_conv",
         "--dtypes", "float32", "--profile", "quick", "--max-examples", "10", *NO_INVALID),
        "at most 10 per group, five value draws per compiled configuration, six conv and "
        "pooling ops and the three fusion chains, float32, no invalid calls (inductor builds C++ "
        "for each new configuration: 2-16 s)",
    ),
    Shard(
        "openvino",
        ("--impl", "openvino", "--profile", "quick"),
        "quick (20 per group), every op and dtype it has (forward)",
    ),
    Shard(
        "tensorflow",
        ("--impl", "tensorflow", "--profile", "quick", "--max-examples", "4"),
        "at most 4 per group, every op, dtype and direction",
    ),
    Shard(
        "tinygrad",
        ("--impl", "tinygrad", "--dtypes", "float32,float16", "--profile", "quick",
         "--max-examples", "5", *NO_INVALID),
        "at most 5 per group (five value draws per configuration), float32/16, no invalid "
        "calls (clang compiles each new configuration: 1-58 s)",
    ),
)  # fmt: skip
BY_NAME = {shard.name: shard for shard in SHARDS}
BEGIN, END = "<!-- scoreboard: begin (generated) -->", "<!-- scoreboard: end -->"


def shard_dir(root: Path, name: str) -> Path:
    return root / f"scoreboard-{name}"


def run_shard(shard: Shard, root: Path) -> int:
    """One shard's campaign (seed $SCOREBOARD_SEED, default 11; workers
    $CONFORMANCE_WORKERS, default auto); its exit status, which the caller may ignore."""
    seed = os.environ.get("SCOREBOARD_SEED", "11")
    workers = os.environ.get("CONFORMANCE_WORKERS", "auto")
    options: tuple[str, ...] = shard.arguments
    after: tuple[str, ...] = ()
    if "--" in options:
        split = options.index("--")
        options, after = options[:split], options[split:]
    command = [sys.executable, "-m", "conformance", "run", *options, "--min-examples", "0",
               "--seed", seed, "--out", str(shard_dir(root, shard.name)), "-n", workers,
               *after]  # fmt: skip
    print(f"scoreboard: shard {shard.name}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, check=False).returncode


def merge(root: Path, readme: Path | None) -> int:
    """The shards that ran, merged into root/scoreboard; the README's grid from it."""
    ran = [shard for shard in SHARDS if (shard_dir(root, shard.name) / "header.json").exists()]
    if not ran:
        print(f"scoreboard: no shard's report under {root}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "conformance", "report",
               *(str(shard_dir(root, shard.name)) for shard in ran),
               "--out", str(root / "scoreboard")]  # fmt: skip
    status = subprocess.run(command, check=False).returncode
    if readme is not None and status in (0, 1):
        write_readme_grid(readme, root, ran)
    return status


def _grid_text(root: Path, ran: Sequence[Shard]) -> list[str]:
    import pandas as pd

    from conformance.reporting.scoreboard import (
        direction_matrix,
        scoreboard_matrix,
        scoreboard_table,
    )

    frame = pd.read_parquet(root / "scoreboard" / "results.parquet")
    headers = {
        shard.name: json.loads((shard_dir(root, shard.name) / "header.json").read_text())
        for shard in ran
    }
    first = headers[ran[0].name]
    examples = len(frame)
    failed = int(scoreboard_table(frame)["failed"].sum())
    verdict = "none failed" if failed == 0 else f"{failed} FAILED"
    lines = [
        f"Generated from the run of {str(first.get('started (UTC)', ''))[:10]} "
        f"(`tox -e scoreboard`, seed {os.environ.get('SCOREBOARD_SEED', '11')}, workers "
        f"{first.get('workers', '?')}, torch {first.get('torch', '?')}, platform "
        f"{first.get('platform', '?')}): {examples:,} examples, {verdict}. "
        "`passed/examples`, then `kN` known, `uN` unsupported, `FN` FAILED:",
        "",
        scoreboard_matrix(scoreboard_table(frame)).to_markdown(),
        "",
        "By direction:",
        "",
        direction_matrix(frame).to_markdown(),
        "",
        "| run | implementations | depth | examples | wall |",
        "|---|---|---|---|---|",
    ]
    for shard in ran:
        header = headers[shard.name]
        implementations = str(header.get("implementation", "?"))
        lines.append(
            f"| {shard.name} | {implementations} | {shard.depth} | "
            f"{int(header.get('examples', 0)):,} | {float(header.get('duration (s)', 0)):.0f} s |"
        )
    return lines


def write_readme_grid(readme: Path, root: Path, ran: Sequence[Shard]) -> None:
    """Replace the text between the markers (whole file written at once, never half)."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"scoreboard: {readme} has no {BEGIN!r} ... {END!r} markers")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    body = "\n".join([BEGIN, "", *_grid_text(root, ran), "", END])
    temporary = readme.with_name(readme.name + ".tmp")
    temporary.write_text(before + body + after, encoding="utf-8")
    temporary.replace(readme)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.campaign.scoreboard")
    parser.add_argument("action", nargs="?", choices=("all", "run", "merge"), default="all")
    parser.add_argument("shards", nargs="*", help=f"for run: of {', '.join(BY_NAME)}")
    parser.add_argument("--root", type=Path, default=Path("reports"), help="where shards go")
    parser.add_argument("--readme", type=Path, help="rewrite this README's scoreboard grid")
    options = parser.parse_args(argv)
    unknown = [name for name in options.shards if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown shard {unknown[0]!r}: choose from {', '.join(BY_NAME)}")
    if options.action == "merge":
        return merge(options.root, options.readme)
    chosen = [BY_NAME[name] for name in options.shards] or list(SHARDS)
    for shard in chosen:
        run_shard(shard, options.root)
    return 0 if options.action == "run" else merge(options.root, options.readme)


if __name__ == "__main__":
    raise SystemExit(main())
