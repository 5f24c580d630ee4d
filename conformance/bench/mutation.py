"""python -m conformance.bench.mutation: the suite's own sensitivity, measured by mutation.

Each mutant (conformance.bench.mutants: one small semantic change to one of reference/'s op
modules, in a copy named ``mutant_reference``) stands in as the implementation under test,
the unmutated reference staying the oracle, and the campaign runs at the chosen depth (ci by
default) in float64 with a fixed seed. The mutant is *killed* when the campaign fails (exit
1, or 130 where pytest-xdist's workers are stopped by -x) with a failing example (fail,
error, crash, hang) in a group the mutated line reaches, or when the mutated package does not
even import (counted apart in the report: killed at import).

Only those groups run: a trace of the unmutated copy under the same seed (every campaign test,
the lines of the copy it executes: conformance.bench.mutation_trace) says which tests reach
the mutated expression, and a group that never executes it behaves as the unmutated copy did
— the seed gives it the same examples —, so it would pass again. A campaign stops at its first
failing group (pytest -x). A mutant whose line no test reaches survives without a run.

Survivors are read by a person: an equivalent one (no input of any op can tell it from the
reference) is explained in reports/mutation/equivalents.toml, keyed by its stable id, and the
report shows the explanation; any other is a weakness of the suite, and weaknesses.toml says
why the suite misses it. The kill rate is over the non-equivalent mutants.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.bench import mutants as generation
from conformance.bench.mutants import IMPLEMENTATION, Mutant

ROOT = generation.REFERENCE.parent
Coverage = dict[str, dict[str, set[int]]]  # campaign test -> reference file -> lines run
IMPORT = "<import>"  # the coverage's entry for the lines the package's import runs
FAILING = ("fail", "error", "crash", "hang", "oracle error", "harness error")


@dataclass(frozen=True)
class Settings:
    """How each campaign runs: depth, Hypothesis seed, limits, workers."""

    profile: str = "ci"
    seed: int = 1
    timeout: float = 300.0  # seconds for one mutant's whole campaign
    reference: Path = generation.REFERENCE  # the package mutated (a run's snapshot of it)
    workers: str = "auto"  # 1, 2, or auto: 2 for a mutant reaching more than 16 tests
    shrink_budget: str = "20,10"

    def campaign(self, out: Path, ops: Sequence[str], workers: int) -> list[str]:
        """The conformance run command line (the tests are chosen after ``--``)."""
        command = [
            sys.executable,
            "-m",
            "conformance",
            "run",
            "--impl",
            IMPLEMENTATION,
            "--dtypes",
            "float64",
            "--profile",
            self.profile,
            "--seed",
            str(self.seed),
            "--database",
            "none",
            "--min-examples",
            "0",
            "--no-shipped-baseline",
            "--shrink-budget",
            self.shrink_budget,
            "--out",
            str(out),
        ]
        if ops:
            command += ["--ops", ",".join(sorted(ops))]
        if workers > 1:
            command += ["-n", str(workers)]
        return command


def environment(directory: Path, **extra: str) -> dict[str, str]:
    """This environment with the mutant's directory first on the import path."""
    paths = [str(directory), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def op_of(test: str) -> str:
    """'test_op[conv2d-float64-forward]' -> 'conv2d'; 'test_invalid_call[conv2d-invalid]'
    -> 'conv2d'."""
    return test.partition("[")[2].split("-")[0]


# ----------------------------------------------------------------------------------------
# the trace: which campaign test runs which line of the (unmutated) copy


def trace_key(settings: Settings) -> str:
    """What a trace depends on: the reference, the harness (its strategies draw the
    examples), the depth and the seed."""
    digest = hashlib.sha256(f"{settings.profile} {settings.seed}".encode())
    for folder in (settings.reference, ROOT / "conformance"):
        for path in sorted(folder.rglob("*.py")):
            if path.parent.name != "bench":  # the benchmarks draw no example
                digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def trace(settings: Settings, work: Path, cache: Path | None, log: Any) -> Coverage:
    """Every campaign test's lines of the copy, from the cache when it was traced with the
    same reference, harness, depth and seed; the traced run must pass (a failure there
    would be counted against every mutant)."""
    key = trace_key(settings)
    directory = work / "trace"
    generation.write_package(directory, None, settings.reference)
    if cache is not None and cache.exists():
        stored = json.loads(gzip.decompress(cache.read_bytes()))
        if stored.get("key") == key:
            return _coverage({**stored["tests"], IMPORT: _imported(directory)})
    prefix = work / "trace-lines"
    command = [
        *settings.campaign(work / "trace-report", (), 2),
        "--isolation",
        "none",
        "--",
        "-p",
        "conformance.bench.mutation_trace",
    ]
    package = directory / generation.PACKAGE
    extra = {"CONFORMANCE_MUTATION_TRACE": f"{package}|{prefix}"}
    print(f"tracing the unmutated copy: {' '.join(command[1:])}", file=log, flush=True)
    began = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, env=environment(directory, **extra), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the unmutated copy does not pass the campaign (exit {done.returncode}); a "
            f"mutation run would count that against every mutant:\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )
    tests: dict[str, dict[str, list[int]]] = {}
    for path in sorted(work.glob("trace-lines.*.json")):
        for test, files in json.loads(path.read_text()).items():
            mine = tests.setdefault(test, {})
            for name, lines in files.items():
                mine[name] = sorted({*mine.get(name, []), *lines})
    print(f"traced {len(tests)} tests in {time.monotonic() - began:.0f} s", file=log, flush=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(gzip.compress(json.dumps({"key": key, "tests": tests}).encode()))
    return _coverage({**tests, IMPORT: _imported(directory)})


def _imported(directory: Path) -> dict[str, list[int]]:
    """The lines of the copy in ``directory`` that its import runs, traced in a process of
    its own."""
    package = directory / generation.PACKAGE
    probe = (
        "import json, sys; from pathlib import Path; "
        "from conformance.bench.mutation_trace import import_lines; "
        "print(json.dumps(import_lines(Path(sys.argv[1]), sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(package), IMPLEMENTATION],
        cwd=ROOT,
        env=environment(directory),
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, list[int]] = json.loads(done.stdout)
    return found


def _coverage(tests: Mapping[str, Mapping[str, Sequence[int]]]) -> Coverage:
    return {
        test: {name: set(lines) for name, lines in files.items()} for test, files in tests.items()
    }


def reaching(mutant: Mutant, coverage: Coverage) -> list[str]:
    """The campaign tests that execute the mutated expression's lines; where the import runs
    them (a factory making the ops), also every test that runs a line of the function (the
    functions it makes are inside it)."""
    name = f"{mutant.module}.py"
    lines = set(mutant.lines)
    if lines & coverage.get(IMPORT, {}).get(name, set()):
        first, last = mutant.function_lines
        lines = set(range(first, last + 1))
    tests = (test for test in coverage if test != IMPORT)
    return sorted(test for test in tests if lines & coverage[test].get(name, set()))


def reached_function(mutant: Mutant, coverage: Coverage) -> bool:
    """Whether any campaign test runs the mutant's function at all."""
    name = f"{mutant.module}.py"
    first, last = mutant.function_lines
    span = set(range(first, last + 1))
    return any(span & files.get(name, set()) for t, files in coverage.items() if t != IMPORT)


# ----------------------------------------------------------------------------------------
# one mutant's campaign


def run_mutant(
    mutant: Mutant, tests: Sequence[str], settings: Settings, work: Path
) -> dict[str, Any]:
    """The mutant's row: its campaign over ``tests`` (none: not reached, no run) and verdict."""
    row: dict[str, Any] = {
        "mutant_id": mutant.id,
        "module": mutant.module,
        "function": mutant.function,
        "line": mutant.line,
        "operator": mutant.operator,
        "before": mutant.before,
        "after": mutant.after,
        "tests": len(tests),
        "ops": ",".join(sorted({op_of(test) for test in tests})),
        "killed_by": "",
        "problem": "",
        "exit_status": None,
        "seconds": 0.0,
    }
    if not tests:
        return {**row, "verdict": "survived", "problem": "no campaign test runs this line"}
    directory = work / "mutant"
    generation.write_package(directory, mutant, settings.reference)
    out = work / "report"
    workers = int(settings.workers) if settings.workers != "auto" else (2 if len(tests) > 16 else 1)
    command = [
        *settings.campaign(out, sorted({op_of(t) for t in tests}), workers),
        "--",
        "-x",
        "-k",
        " or ".join(tests),
    ]
    began = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=environment(directory),
            capture_output=True,
            text=True,
            timeout=settings.timeout,
        )
    except subprocess.TimeoutExpired:
        row["seconds"] = round(time.monotonic() - began, 1)
        return {**row, "verdict": "timeout", "problem": f"over {settings.timeout:.0f} s"}
    row["seconds"] = round(time.monotonic() - began, 1)
    row["exit_status"] = done.returncode
    failures = _failures(out)
    # exit 1; or 130 where pytest-xdist's workers were stopped by -x after the first failure
    if done.returncode in (1, 130) and failures:
        killed_by, problem = failures[0]
        return {**row, "verdict": "killed", "killed_by": killed_by, "problem": problem}
    if done.returncode == 0:
        return {**row, "verdict": "survived"}
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    if not _imports(directory):
        # the mutated package does not import: the run stops before any example (exit 2 for
        # an ImportError or a ValueError, 1 with a traceback for any other exception)
        return {**row, "verdict": "killed", "killed_by": "import", "problem": tail[-1][-300:]}
    return {**row, "verdict": "error", "problem": " | ".join(tail)[-400:]}


def _imports(directory: Path) -> bool:
    """Whether the mutant package in ``directory`` imports (in a process of its own)."""
    probe = [sys.executable, "-c", f"import {IMPLEMENTATION}"]
    return (
        subprocess.run(probe, cwd=ROOT, env=environment(directory), capture_output=True).returncode
        == 0
    )


def _failures(out: Path) -> list[tuple[str, str]]:
    """(group, 'verdict: problem') of each failing example of a campaign's results."""
    import pandas as pd

    path = out / "results.parquet"
    if not path.exists():
        return []
    rows = pd.read_parquet(path, columns=["op", "dtype", "direction", "verdict", "problem"])
    failing = rows[rows["verdict"].isin(FAILING)]
    found = []
    for row in failing.itertuples():
        direction = "invalid" if row.direction == "invalid call" else f"{row.dtype}-{row.direction}"
        problem = " ".join(str(row.problem).split())[:200]
        found.append((f"{row.op}-{direction}", f"{row.verdict}: {problem}"))
    return found


# ----------------------------------------------------------------------------------------
# the run


def equivalents(path: Path) -> dict[str, str]:
    """Mutant id -> its reason, from reports/mutation/equivalents.toml (why it is equivalent)
    or weaknesses.toml (why the suite misses it)."""
    if not path.exists():
        return {}
    return {key: str(value["reason"]) for key, value in tomllib.loads(path.read_text()).items()}


def select(
    options: argparse.Namespace, coverage: Coverage | None, reference: Path = generation.REFERENCE
) -> list[Mutant]:
    """The mutants of this run: of the chosen modules, in functions the campaign calls,
    ``--limit`` of them spread over modules, functions and operators (``--seed``)."""
    modules = generation.OP_MODULES
    if options.ops_module:
        modules = tuple(m.strip() for m in options.ops_module.split(","))
        unknown = sorted(set(modules) - set(generation.OP_MODULES))
        if unknown:
            raise ValueError(f"--ops-module: not an op module: {', '.join(unknown)}")
    found = generation.all_mutants(modules, reference)
    if coverage is not None:
        found = [mutant for mutant in found if reached_function(mutant, coverage)]
    if options.only:
        wanted = set(options.only.split(","))
        return [mutant for mutant in found if mutant.id in wanted]
    return generation.sample(found, options.limit, options.seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.bench.mutation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--limit", type=int, default=120, help="mutants (default 120)")
    parser.add_argument("--seed", type=int, default=0, help="which mutants (default 0)")
    parser.add_argument("--ops-module", help="comma-separated reference modules (default: all)")
    parser.add_argument("--only", help="comma-separated mutant ids (of the selected modules)")
    parser.add_argument("--profile", default="ci", choices=("quick", "ci", "thorough"))
    parser.add_argument("--campaign-seed", type=int, default=1, help="Hypothesis seed")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("-n", "--workers", default="auto", choices=("auto", "1", "2"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "mutation")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the verdicts of mutants already in OUT/mutants.csv",
    )
    options = parser.parse_args(argv)
    command = (
        f"python -m conformance.bench.mutation --limit {options.limit} --seed {options.seed} "
        f"--profile {options.profile} --campaign-seed {options.campaign_seed}"
        + (f" --ops-module {options.ops_module}" if options.ops_module else "")
        + (f" --only {options.only}" if options.only else "")
    )
    settings = Settings(options.profile, options.campaign_seed, options.timeout, options.workers)
    if options.list:
        for mutant in select(options, None):
            print(f"{mutant.id}  {mutant.module}.py:{mutant.line}\n{mutant.diff()}")
        return 0
    from conformance.bench import mutation_report

    options.out.mkdir(parents=True, exist_ok=True)
    explained = equivalents(options.out / "equivalents.toml")
    missed = equivalents(options.out / "weaknesses.toml")
    earlier = mutation_report.earlier_rows(options.out) if options.resume else {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        work = Path(scratch)
        snapshot = work / "reference"
        shutil.copytree(
            generation.REFERENCE, snapshot, ignore=shutil.ignore_patterns("__pycache__")
        )
        settings = dataclasses.replace(settings, reference=snapshot)
        cache = options.out / f"trace-{options.profile}-seed{options.campaign_seed}.json.gz"
        coverage = trace(settings, work, cache, sys.stdout)
        chosen = select(options, coverage, snapshot)
        rows = []
        for number, mutant in enumerate(chosen, 1):
            row = earlier.get(mutant.id)
            if row is None or (row["before"], row["after"]) != (mutant.before, mutant.after):
                row = run_mutant(mutant, reaching(mutant, coverage), settings, work)
            row = mutation_report.settle(row, explained, missed)
            rows.append(row)
            print(
                f"[{number}/{len(chosen)}] {row['verdict']:<10} {row['seconds']:>6.1f} s  "
                f"{mutant.id}  {row['killed_by']}",
                flush=True,
            )
            mutation_report.write(
                options.out, rows, settings, time.monotonic() - began, False, command
            )
    figures = mutation_report.write(
        options.out, rows, settings, time.monotonic() - began, True, command
    )
    print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
