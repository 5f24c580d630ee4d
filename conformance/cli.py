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
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from conformance.campaign.launch import did_you_mean
from conformance.catalogue.names import DTYPES
from conformance.model.command import add_arguments as add_model_arguments

DEFAULT_OUT = Path("reports") / "latest"
PROFILE_MINIMUM = {"quick": 0, "ci": 100, "thorough": 100}


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        metavar="CSV",
        help="known discrepancies of your own (the shipped baseline's columns), added to the "
        "suite's shipped baseline of torch's and the built-in implementations' known defects; "
        "repeatable",
    )
    parser.add_argument(
        "--no-shipped-baseline",
        action="store_true",
        help="leave the shipped baseline out: only --baseline files apply",
    )


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error in one line of the CLI's own words (and a "did you
    mean" for a near miss of a choice or a flag), exit status 2."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            hint = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        flags = re.search(r"unrecognized arguments: (\S+)", message)
        if flags:
            known = [o for action in self._actions for o in action.option_strings]
            for sub in self._subparsers._group_actions if self._subparsers else ():
                for parser in getattr(sub, "choices", {}).values():
                    known += [o for action in parser._actions for o in action.option_strings]
            hint = did_you_mean(flags.group(1), known)
        print(f"{self.prog}: error: {message}{hint}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
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
        "reference, or package.module:attribute: your own module, imported from the current "
        "directory first, as the installed conformance command and python -m conformance "
        "both do (default: torch)",
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
    add_baseline_arguments(run)
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
    add_baseline_arguments(report)

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

    listing = commands.add_parser(
        "list", help="the catalogue: ops, families, dtypes, directions; the implementations"
    )
    listing.add_argument(
        "--signatures",
        action="store_true",
        help="every op's forward, backward, jvp and double-backward signature and what each "
        "returns, as an implementation of your own must offer them",
    )

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
    bench.add_argument(
        "--reference-threads",
        type=int,
        default=None,
        help="threads of the reference's large grouped convolutions (default: torch's, so "
        "that each side has the same cores)",
    )
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


def command_run(options: argparse.Namespace) -> int:
    from conformance.campaign.launch import run

    return run(options)


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
    from conformance.reporting.baseline import explain_frame, load_baselines
    from conformance.reporting.report import discrepancies, write_report
    from conformance.reporting.results import load_many

    frame = load_many(options.results)
    baseline = load_baselines(options.baseline or (), not options.no_shipped_baseline)
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

    if options.signatures:
        from conformance.catalogue.signatures import signature_lines

        for spec in CATALOGUE:
            print("\n".join(signature_lines(spec)) + "\n")
        return 0
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
    # an --impl module (or a model factory) in the current directory imports, whether this
    # runs as python -m conformance or as the installed conformance command
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    options = _parser().parse_args(argv)
    try:
        return COMMANDS[options.command](options)
    except ValueError as error:  # a ResultsError too: an unreadable results file
        print(f"conformance {options.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"conformance {options.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
