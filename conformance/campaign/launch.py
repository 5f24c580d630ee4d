"""``python -m conformance run``: every option checked first (a usage error is one line,
exit 2, before anything heavy loads), then the campaign handed to pytest with the plugin."""

from __future__ import annotations

import argparse
import difflib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from conformance.campaign.arithmetic_ops import ARITHMETIC_OPS
from conformance.catalogue.names import DTYPES, OPS

PROFILE_MINIMUM = {"quick": 0, "ci": 100, "thorough": 100}


def _campaign_path() -> Path:
    return Path(__file__).with_name("tests.py")


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
        # no assertion rewriting: pytest would rewrite every module of its plugins' packages
        # (hypothesis's hundred) in each process, 1-2 s of CPU where bytecode is not cached
        # (PYTHONDONTWRITEBYTECODE); the campaign's asserts carry their own messages
        "--assert=plain",
        f"--hypothesis-profile={'capped' if options.max_examples else options.profile}",
        f"--conformance-report={options.out}",
        f"--conformance-min-examples={minimum}",
        f"--conformance-impl={options.impl}",
        f"--conformance-isolation={options.isolation}",
    ]
    if options.no_shipped_baseline:
        arguments.append("--conformance-no-shipped-baseline")
    arguments += [f"--conformance-baseline={path}" for path in options.baseline or ()]
    for flag, value in (
        ("--conformance-ops", options.ops),
        ("--conformance-device", options.device),
        ("--conformance-dtypes", options.dtypes),
        ("--conformance-shard", options.shard),
        ("--hypothesis-seed", options.seed),
        ("--conformance-time-limit", options.time_limit),
        ("-n", options.workers),
    ):
        if value is not None:
            arguments.append(f"{flag}={value}" if flag.startswith("--") else f"{flag}{value}")
    if options.target:
        arguments.append("--conformance-target")
    if options.seed is None:  # a seed of its own, which the header names: a run replays
        arguments.append(f"--conformance-seed={secrets.randbelow(2**32)}")
    return arguments + list(options.pytest_args)


def did_you_mean(given: str, valid: Sequence[str]) -> str:
    """'; did you mean 'conv2d'?' for a near miss (case aside), else ''."""
    lowered = {name.lower(): name for name in valid}
    close = difflib.get_close_matches(given.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def listed(option: str, given: str | None, valid: Sequence[str], what: str) -> None:
    """Refuse names that are not in ``valid``, in the CLI's own words."""
    if given is None:
        return
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{option}: nothing given; see python -m conformance list")
    for name in names:
        if name not in valid:
            raise ValueError(
                f"{option}: unknown {what} {name!r}{did_you_mean(name, valid)} (see python -m "
                "conformance list)"
            )


def writable(option: str, directory: Path) -> None:
    """A report directory this run can create or write, or one line saying why not (nothing
    is created: a usage error leaves no directory behind)."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--{option.lstrip('-')}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write the report in {directory}: permission denied")


def readable_baselines(paths: Sequence[Path] | None) -> None:
    for path in paths or ():
        if not path.is_file():
            raise ValueError(f"--baseline: no such file: {path}")


def validate_run(options: argparse.Namespace) -> None:
    """Every run option checked before pytest starts: a usage error is one line, exit 2; the
    cheap ones before torch or Hypothesis is imported, the implementations last (importing
    each names a missing module or framework)."""
    listed("--ops", options.ops, [*OPS, *ARITHMETIC_OPS], "op")
    listed("--dtypes", options.dtypes, DTYPES, "dtype")
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
    readable_baselines(options.baseline)
    writable("--out", options.out)
    _check_implementations(options)


def _check_implementations(options: argparse.Namespace) -> None:
    from conformance.implementations import BUILT_IN, check_implementation
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
        if "." not in spec and ":" not in spec and "[" not in spec and spec not in BUILT_IN:
            hint = did_you_mean(spec, [*BUILT_IN, "reference"])
            if hint:  # a near miss of a built-in name, not a module of the user's
                raise ValueError(f"--impl: unknown implementation {spec!r}{hint}")
    for spec in specs:  # a missing module or framework is named now
        try:
            check_implementation(spec, device=options.device)
        except ValueError as error:
            raise ValueError(f"--impl: {error}") from None


INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C (128 + SIGINT)


def run(options: argparse.Namespace) -> int:
    # read by conformance.campaign.profiles when it is imported, in every worker too
    os.environ["CONFORMANCE_PROFILE"] = options.profile
    if options.max_examples is not None:
        os.environ["CONFORMANCE_MAX_EXAMPLES"] = str(options.max_examples)
    validate_run(options)
    import pytest

    if options.shrink_budget is not None:  # read by the campaign, in every worker too
        examples, _, seconds = options.shrink_budget.partition(",")
        os.environ["CONFORMANCE_SHRINK_EXAMPLES"] = examples.strip()
        if seconds.strip():
            os.environ["CONFORMANCE_SHRINK_SECONDS"] = seconds.strip()
    if options.database is not None:  # read by conformance.campaign.profiles, in workers too
        os.environ["CONFORMANCE_DATABASE"] = options.database
    code = int(pytest.main(pytest_arguments(options)))
    if code == pytest.ExitCode.INTERRUPTED:
        return INTERRUPTED
    return {0: 0, 1: 1}.get(code, 2 if code in (3, 4) else 1)
