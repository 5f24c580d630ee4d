"""How often a campaign catches each planted bug: the planted-bug fixtures of this directory,
each run as ``python -m conformance run --impl tests.harness.<fixture>`` over many seeds at
the ci depth, restricted to the op the fixture implements. A seed catches the bug when the run
exits 1 (a discrepancy); 0 is a miss; anything else is reported as an error.

    python tests/harness/detection.py --seeds 20 [--jobs 2] [--profile ci] [--pythonpath DIR]
        [--out CSV]

--pythonpath runs another checkout's conformance and reference (the code before a change, say)
against the same fixtures: copy the fixtures into that checkout's tests/harness first. Not a
test: a measurement, for the throughput/detection trade of a change to generation (issue 14).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# fixture module, the ops it implements, the dtypes to run it in, the tests to select
ALL = "float64,float32,float16,bfloat16"
FIXTURES = {
    "wrong_padding": ("conv2d", ALL, "not invalid"),
    "wrong_batch_norm": ("batch_norm", ALL, "not invalid"),
    "textbook_batch_norm": ("batch_norm", ALL, "not invalid"),
    "wrong_ceil_pool": ("max_pool2d", ALL, "not invalid"),
    "wrong_avg_divisor": ("avg_pool2d", ALL, "not invalid"),
    "wrong_dilated_weight_grad": ("conv2d", ALL, "not invalid"),
    "pool_stride_one": ("max_pool2d", ALL, "forward"),
    "reflect_pad_size": ("conv2d", "float64", "invalid"),
}
ROOT = Path(__file__).resolve().parents[2]


def run_once(
    fixture: str, seed: int, pythonpath: str | None, scratch: Path, profile: str = "ci"
) -> str:
    ops, dtypes, selection = FIXTURES[fixture]
    out = scratch / f"{fixture}-{seed}"
    command = [
        sys.executable, "-m", "conformance", "run",
        f"--impl=tests.harness.{fixture}", f"--ops={ops}", f"--dtypes={dtypes}",
        f"--profile={profile}", f"--seed={seed}", f"--out={out}", "--database=none",
        "--min-examples=0", "--", "-k", selection,
    ]  # fmt: skip
    environment = dict(os.environ)
    cwd = ROOT
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath
        cwd = Path(pythonpath)
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    return {0: "missed", 1: "caught"}.get(done.returncode, f"error {done.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pythonpath", default=None)
    parser.add_argument("--fixtures", default=",".join(FIXTURES))
    parser.add_argument("--profile", default="ci", help="quick tells generation apart sooner")
    parser.add_argument("--out", default=None, help="CSV of fixture, seed, outcome")
    options = parser.parse_args()
    fixtures = [name for name in options.fixtures.split(",") if name]
    jobs = [(fixture, seed) for fixture in fixtures for seed in range(1, options.seeds + 1)]
    with tempfile.TemporaryDirectory(prefix="detection-") as scratch:
        with ThreadPoolExecutor(options.jobs) as pool:
            outcomes = list(
                pool.map(
                    lambda job: run_once(*job, options.pythonpath, Path(scratch), options.profile),
                    jobs,
                )
            )
    lines = ["fixture,seed,outcome"]
    lines += [f"{f},{s},{o}" for (f, s), o in zip(jobs, outcomes, strict=True)]
    if options.out:
        Path(options.out).write_text("\n".join(lines) + "\n")
    for fixture in fixtures:
        mine = [o for (f, _), o in zip(jobs, outcomes, strict=True) if f == fixture]
        errors = sum(o.startswith("error") for o in mine)
        print(
            f"{fixture}: caught by {mine.count('caught')} of {len(mine)} seeds"
            + (f" ({errors} errors)" if errors else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
