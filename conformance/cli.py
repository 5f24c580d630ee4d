"""python -m conformance: run the campaign, re-render or merge reports, compare two runs,
list the catalogue, time the reference.

Exit status: 0 when every example passed or is explained by the baseline; 1 when a
discrepancy is not in the baseline (or, for run, a group fell short of the minimum examples;
for diff, NEW has a discrepancy OLD had not); 2 for a usage error or an unreadable file,
always said in one line.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.campaign.arithmetic_ops import ARITHMETIC_OPS
from conformance.catalogue.dtypes import DTYPES
from conformance.model.command import add_arguments as add_model_arguments

DEFAULT_OUT = Path("reports") / "latest"
DEFAULT_BASELINE = Path("reports") / "baseline.csv"
PROFILE_MINIMUM = {"quick": 0, "ci": 100, "thorough": 100}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="A NumPy reference for convolution math, fuzzed against implementations "
        "(torch by default) with Hypothesis; every example is measured against a proven "
        "error bound and written to a report.",
        epilog="Exit status: 0 all explained, 1 a discrepancy the baseline does not explain "
        "(or too few examples), 2 usage error or unreadable input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the campaign and write a report",
        description="Run the campaign: every selected op x dtype x direction, each against "
        "the float64 oracle, into one report directory.",
    )
    run.add_argument(
        "--profile",
        choices=("quick", "ci", "thorough"),
        default="ci",
        help="examples per op x dtype x direction: quick 20, ci 150 (the gate: >= 100 "
        "distinct), thorough 1000 (default: ci)",
    )
    run.add_argument("--ops", help="comma-separated catalogue ops (default: all; see list)")
    run.add_argument(
        "--dtypes", help=f"comma-separated dtypes from {', '.join(DTYPES)} (default: all)"
    )
    run.add_argument(
        "--impl",
        default="torch",
        help="comma-separated implementations under test: torch, torch-channels_last, "
        "torch-compile, torch-decompositions, onnxruntime, onnx-reference, jax (see list), "
        "a CPU code path of torch (torch[cpu:avx2], torch[aten:avx2], torch[threads:2]), "
        "reference, or package.module:attribute (default: torch)",
    )
    run.add_argument(
        "--device",
        default=None,
        help="the device torch runs on: cpu (default), cuda, cuda:N or mps; on CUDA, float32 "
        "is judged as TF32 where torch.backends.cudnn.allow_tf32 is on",
    )
    run.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default: {DEFAULT_OUT})"
    )
    run.add_argument(
        "-n",
        "--workers",
        default=None,
        help="pytest-xdist worker processes, a number or 'auto'; the workers' rows merge into "
        "one report identical to a serial run's with the same seed (default: 1)",
    )
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="run only the I-th of N disjoint slices of the catalogue (merge the shards' "
        "results with 'report')",
    )
    run.add_argument(
        "--seed",
        type=int,
        help="Hypothesis seed: the same seed and profile give the same rows, serial or with "
        "workers (the database is then not used)",
    )
    run.add_argument(
        "--database",
        default=None,
        help="Hypothesis example database directory: a run without --seed replays the "
        "failures saved there before anything new, and saves its own; 'none' to neither "
        "read nor write it. Hypothesis ignores it under --seed. (default: "
        ".hypothesis/examples)",
    )
    run.add_argument(
        "--baseline",
        type=Path,
        default=DEFAULT_BASELINE,
        help=f"known discrepancies (default: {DEFAULT_BASELINE})",
    )
    run.add_argument(
        "--min-examples",
        type=int,
        default=None,
        help="fail a group with fewer distinct examples, or an op region never hit "
        "(default: 100 for ci and thorough, 0 for quick)",
    )
    run.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="at most this many examples per group, whatever the profile (for implementations "
        "that compile every new configuration, such as torch-compile)",
    )
    run.add_argument(
        "--isolation",
        choices=("process", "none"),
        default="process",
        help="process (default): implementation calls run in helper processes, so that a call "
        "that kills its process (a signal, an abort, an out-of-memory kill) or never returns "
        "is judged (verdict crash or hang) and the run goes on; none: in the test process",
    )
    run.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a call that has not returned after this long is a hang (default: 5 s, or what "
        "the implementation declares: torch-compile compiles for longer)",
    )
    run.add_argument(
        "--shrink-budget",
        default=None,
        metavar="EXAMPLES[,SECONDS]",
        help="what a failing group may still judge after its first failure while Hypothesis "
        "shrinks it (default: 300 examples, or --max-examples where given, and 120 s); past "
        "it the smallest failure found stands, and the report says shrinking stopped there",
    )
    run.add_argument(
        "--target",
        action="store_true",
        help="steer Hypothesis toward each op's largest bound ratio (narrows coverage)",
    )
    run.add_argument(
        "--pytest-output",
        action="store_true",
        help="pytest's own full output (tracebacks, Hypothesis's falsifying examples) instead "
        "of the progress line and the verdict",
    )
    run.add_argument(
        "pytest_args", nargs="*", help="further pytest arguments, after --", metavar="PYTEST_ARG"
    )

    report = commands.add_parser(
        "report",
        help="re-render a report from results files, merging several (shards)",
        description="Build one report from one or more results (results.parquet, "
        "results.csv, a report directory, or a crashed run's directory with spooled rows).",
    )
    report.add_argument("results", nargs="+", type=Path, help="results files or directories")
    report.add_argument("--out", type=Path, required=True, help="report directory to write")
    report.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)

    diff = commands.add_parser(
        "diff",
        help="compare two runs: discrepancies new and fixed, error-distribution shifts",
        description="Compare OLD and NEW results (say, two torch versions).",
    )
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--out", type=Path, help="also write the comparison as markdown here")
    diff.add_argument(
        "--shift",
        type=float,
        default=2.0,
        help="flag a group whose p99 normalized error moved by more than this factor (default: 2)",
    )

    commands.add_parser("list", help="the catalogue: ops, families, dtypes, directions")

    bench = commands.add_parser(
        "bench",
        help="time the reference against torch, side by side",
        description="Time the reference and torch on the CPU in one process: ResNet-50's "
        "conv layers and more, float32 and float64, forward and backward.",
    )
    bench.add_argument("--out", type=Path, default=DEFAULT_OUT)
    bench.add_argument("--repeats", type=int, default=5, help="repetitions per case (median)")
    bench.add_argument(
        "--size", type=int, default=56, help="input height and width of the ResNet stem"
    )
    bench.add_argument("--batch", type=int, default=8)
    bench.add_argument("--quick", action="store_true", help="a few small cases only")
    bench.add_argument(
        "--model",
        metavar="SPEC",
        help="instead: time the model command on this network (package.module:factory): "
        "the oracle with its bound against torch float64 on every conv layer, the command's "
        "wall time and peak memory",
    )
    bench.add_argument("--input-shape", default="1,3,224,224", help="with --model")

    model = commands.add_parser(
        "model",
        help="check every layer of a real network against the oracle (the checklist)",
        description="Run the notebook's checklist on a network: every layer's shapes, "
        "parameters, FLOPs, receptive field, activation statistics and alternatives, and "
        "each convolution, pooling and normalization layer on its real input through the "
        "implementation under test against the float64 oracle.",
    )
    add_model_arguments(model)
    return parser


def _campaign_path() -> Path:
    return Path(__file__).with_name("campaign") / "tests.py"


def _campaign_modules(options: argparse.Namespace) -> list[str]:
    """The campaign's test modules: the catalogue's, and the network arithmetic (exact checks
    of torch.nn modules) when torch is under test, the ops filter keeps some of it and the
    shard is the first (it is one slice of its own)."""
    from conformance.implementations.code_paths import split_specs

    modules = [str(_campaign_path())]
    specs = set(split_specs(options.impl))
    wanted = options.ops is None or bool(
        {op.strip() for op in options.ops.split(",")} & set(ARITHMETIC_OPS)
    )
    first_shard = options.shard is None or options.shard.split("/")[0].strip() == "1"
    if "torch" in specs and wanted and first_shard:
        modules.append(str(_campaign_path().with_name("arithmetic.py")))
    return modules


def pytest_arguments(options: argparse.Namespace) -> list[str]:
    minimum = options.min_examples
    if minimum is None:
        minimum = PROFILE_MINIMUM[options.profile]
    quiet = (
        []
        if options.pytest_output
        else ["-q", "--tb=no", "-rN", "-p", "no:warnings", "-o", "console_output_style=classic"]
    )
    arguments = [
        *_campaign_modules(options),
        "-p",
        "conformance.campaign.plugin",
        "-q",
        *quiet,
        "--conformance-progress",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-profile={'capped' if options.max_examples else options.profile}",
        f"--conformance-report={options.out}",
        f"--conformance-min-examples={minimum}",
        f"--conformance-impl={options.impl}",
        f"--conformance-baseline={options.baseline}",
    ]
    for flag, value in (
        ("--conformance-ops", options.ops),
        ("--conformance-device", options.device),
        ("--conformance-dtypes", options.dtypes),
        ("--conformance-shard", options.shard),
        ("--hypothesis-seed", options.seed),
        ("-n", options.workers),
    ):
        if value is not None:
            arguments.append(f"{flag}={value}" if flag.startswith("--") else f"{flag}{value}")
    if options.target:
        arguments.append("--conformance-target")
    arguments.append(f"--conformance-isolation={options.isolation}")
    if options.time_limit is not None:
        arguments.append(f"--conformance-time-limit={options.time_limit}")
    if options.seed is None:  # a seed of its own, which the header names: a run replays
        arguments.append(f"--conformance-seed={secrets.randbelow(2**32)}")
    return arguments + list(options.pytest_args)


def _listed(option: str, given: str | None, valid: Sequence[str], what: str) -> None:
    """Refuse names that are not in ``valid``, in the CLI's own words."""
    if given is None:
        return
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{option}: nothing given; see python -m conformance list")
    for name in names:
        if name not in valid:
            raise ValueError(f"{option}: unknown {what} {name!r}; see python -m conformance list")


def validate_run(options: argparse.Namespace) -> None:
    """Every run option checked before pytest starts: a usage error is one line, exit 2."""
    from conformance.catalogue import CATALOGUE
    from conformance.implementations import load_implementation

    _listed("--ops", options.ops, [spec.name for spec in CATALOGUE] + [*ARITHMETIC_OPS], "op")
    _listed("--dtypes", options.dtypes, DTYPES, "dtype")
    if options.shard is not None:
        index, _, count = options.shard.partition("/")
        if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
            raise ValueError(f"--shard: expected I/N with 1 <= I <= N, got {options.shard!r}")
    if options.max_examples is not None and options.max_examples < 1:
        raise ValueError(f"--max-examples: a positive number, got {options.max_examples}")
    if options.workers is not None and not (
        options.workers == "auto" or str(options.workers).isdigit()
    ):
        raise ValueError(f"-n/--workers: a number or 'auto', got {options.workers!r}")
    if options.shrink_budget is not None:
        examples, _, seconds = options.shrink_budget.partition(",")
        try:
            if int(examples) < 1 or (seconds.strip() and not float(seconds) > 0):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"--shrink-budget: EXAMPLES[,SECONDS], both positive, got {options.shrink_budget!r}"
            ) from None
    if options.time_limit is not None and not options.time_limit > 0:
        raise ValueError(f"--time-limit: a positive number of seconds, got {options.time_limit}")
    from conformance.implementations.code_paths import environment, split_specs

    specs = split_specs(options.impl)
    if not specs:
        raise ValueError("--impl: nothing given; see python -m conformance list")
    for spec in specs:
        try:
            if environment(spec) and options.isolation == "none":
                raise ValueError(
                    f"implementation {spec!r}: a code path runs only in a helper process of "
                    "its own (--isolation process)"
                )
        except ValueError as error:
            raise ValueError(f"--impl: {error}") from None
    for spec in specs:  # imports each one: a missing module or framework is named now
        try:
            load_implementation(spec, device=options.device)
        except ValueError as error:
            raise ValueError(f"--impl: {error}") from None


INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C (128 + SIGINT)


def command_run(options: argparse.Namespace) -> int:
    import os

    import pytest

    # read by conformance.campaign.profiles when it is imported, in every worker too
    os.environ["CONFORMANCE_PROFILE"] = options.profile
    if options.max_examples is not None:
        os.environ["CONFORMANCE_MAX_EXAMPLES"] = str(options.max_examples)
    validate_run(options)
    if options.shrink_budget is not None:  # read by the campaign, in every worker too
        examples, _, seconds = options.shrink_budget.partition(",")
        os.environ["CONFORMANCE_SHRINK_EXAMPLES"] = examples.strip()
        if seconds.strip():
            os.environ["CONFORMANCE_SHRINK_SECONDS"] = seconds.strip()
    if options.database is not None:  # read by conformance.campaign.profiles, in every worker too
        os.environ["CONFORMANCE_DATABASE"] = options.database
    code = int(pytest.main(pytest_arguments(options)))
    if code == pytest.ExitCode.INTERRUPTED:
        return INTERRUPTED
    return {0: 0, 1: 1}.get(code, 2 if code in (3, 4) else 1)


def _header_of(path: Path) -> dict[str, Any]:
    source = path / "header.json" if path.is_dir() else path.with_name("header.json")
    try:
        return dict(json.loads(source.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def merged_header(paths: Sequence[Path], examples: int) -> dict[str, Any]:
    """The first input's environment; what differs between inputs is listed, not hidden."""
    headers = [_header_of(path) for path in paths]
    header: dict[str, Any] = {"merged from": ", ".join(str(p) for p in paths)}
    first = next((h for h in headers if h), {})
    for key in first:
        values = [str(h.get(key)) for h in headers if h]  # in the inputs' order
        header[key] = first[key] if len(set(values)) == 1 else " | ".join(values)
    header["examples"] = examples
    partial = [str(h["partial"]) for h in headers if h.get("partial", "no") != "no"]
    header["partial"] = "; ".join(partial) if partial else "no"
    return header


def command_report(options: argparse.Namespace) -> int:
    from conformance.catalogue import CATALOGUE
    from conformance.reporting.baseline import explain_frame, load_baseline
    from conformance.reporting.report import discrepancies, write_report
    from conformance.reporting.results import load_many

    frame = load_many(options.results)
    baseline = load_baseline(options.baseline)
    frame = explain_frame(frame, baseline)
    header = merged_header(options.results, len(frame))
    write_report(frame, options.out, header, CATALOGUE, baseline)
    found = discrepancies(frame)
    print(
        f"conformance: {len(frame)} examples from {len(options.results)} results, "
        f"{len(found)} discrepant groups; report in {options.out}/summary.md"
    )
    return 1 if found else 0


def command_diff(options: argparse.Namespace) -> int:
    from conformance.reporting.diff import compare, render
    from conformance.reporting.report import atomic_write
    from conformance.reporting.results import load

    old, new = load(options.old), load(options.new)
    comparison = compare(old, new, options.shift)
    text = render(comparison, options.old, options.new)
    print(text)
    if options.out is not None:
        atomic_write(options.out, text)
    return 1 if comparison.new_discrepancies else 0


def command_list(options: argparse.Namespace) -> int:
    from conformance.catalogue import CATALOGUE
    from conformance.implementations import BUILT_IN, installed

    print(f"{'op':26} {'family':14} {'dtypes':36} directions")
    for spec in CATALOGUE:
        print(
            f"{spec.name:26} {spec.family:14} {','.join(spec.dtypes):36} "
            f"{','.join(spec.directions)}"
        )
    print("\nimplementations (--impl NAME[,NAME...]):")
    for name, present in installed().items():
        built_in = BUILT_IN[name]
        state = (
            "installed"
            if present
            else f"not installed: pip install 'convconformance[{built_in.extra}]'"
        )
        print(f"  {name:22} {built_in.summary} ({state})")
    print("  reference              the oracle itself")
    print("  package.module[:attr]  your own module or object")
    from conformance.implementations.code_paths import code_paths

    print("\ntorch's CPU code paths on this machine (--impl 'torch[cpu:avx2]'; options combine:")
    print("torch[cpu:avx512_core_bf16,threads:2]; torch-channels_last takes them too):")
    for name, why in code_paths():
        print(f"  {name:30} {why or 'available'}")
    return 0


def command_model(options: argparse.Namespace) -> int:
    from conformance.model.command import main as model_main

    return model_main(options)


def command_bench(options: argparse.Namespace) -> int:
    if options.model:  # --model SPEC: the model command at real size
        from conformance.bench.model import main as model_bench

        return model_bench(options)
    from conformance.bench.reference import main as bench_main

    return bench_main(options)


COMMANDS = {
    "run": command_run,
    "report": command_report,
    "diff": command_diff,
    "list": command_list,
    "bench": command_bench,
    "model": command_model,
}


def main(argv: Sequence[str] | None = None) -> int:
    from conformance.reporting.results import ResultsError

    options = _parser().parse_args(argv)
    try:
        return COMMANDS[options.command](options)
    except (ResultsError, ValueError) as error:
        print(f"conformance {options.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"conformance {options.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
