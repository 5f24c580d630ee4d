"""The run's header: when, how long, where, with what (versions, seed, profile, the
implementations' code paths), and the lists beside it (groups skipped, baseline entries not
applied on this platform)."""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from conformance.implementations import BUILT_IN, code_paths
from conformance.reporting.baseline import KnownDiscrepancy


def implementation_specs(config: pytest.Config) -> list[str]:
    given = str(config.getoption("conformance_impl"))
    return code_paths.split_specs(given) or ["torch"]


def read_platforms(parts: Path) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for path in sorted(parts.glob("platform-*.json")):
        try:
            facts.update(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        path.unlink(missing_ok=True)
    return facts


def _version(package: str) -> str:
    """The installed version of the package imported as ``package``, whichever distribution
    installed it (tensorflow is imported from tensorflow-cpu, say)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
    for distribution in metadata.packages_distributions().get(package, ()):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def run_header(
    config: pytest.Config, started: tuple[float, str], examples: int, partial: str
) -> dict[str, Any]:
    began, started_text = started
    duration = time.time() - began
    return {
        "started (UTC)": started_text,
        "duration (s)": round(duration, 1),
        "examples": examples,
        "examples per second": round(examples / duration, 1) if duration > 0 else None,
        "workers": getattr(config.option, "numprocesses", None) or 1,
        "shard": config.getoption("conformance_shard") or "all",
        "partial": partial or "no",
        "implementation": config.getoption("conformance_impl"),
        "profile": _profile_text(config),
        "seed": _seed_text(config),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{package: _version(package) for package in _packages(config)},
    }


def run_seed(config: pytest.Config) -> Any:
    """The run's seed: --hypothesis-seed, else the one drawn for it (--conformance-seed)."""
    given = config.getoption("hypothesis_seed", None)
    return given if given is not None else config.getoption("conformance_seed", None)


def _seed_text(config: pytest.Config) -> str:
    if config.getoption("hypothesis_seed", None) is not None:
        return str(config.getoption("hypothesis_seed"))
    drawn = config.getoption("conformance_seed", None)
    if drawn is None:
        return "random"
    return (
        f"{drawn} (drawn for this run: --seed {drawn} --database none replays it, but for the "
        "example database's replays, which came first)"
    )


def _profile_text(config: pytest.Config) -> str:
    profile = config.getoption("hypothesis_profile", None) or os.environ.get(
        "CONFORMANCE_PROFILE", "ci"
    )
    if profile == "capped":
        return (
            f"{os.environ.get('CONFORMANCE_PROFILE', 'ci')}, at most "
            f"{os.environ.get('CONFORMANCE_MAX_EXAMPLES')} examples per group"
        )
    return str(profile)


def _packages(config: pytest.Config) -> list[str]:
    """The packages whose versions a run's header states: the harness's and those of every
    built-in implementation under test (the baseline's confirmed_with is compared to them)."""
    packages = ["torch", "numpy", "hypothesis", "pandas"]
    for spec in implementation_specs(config):
        base = code_paths.parse(spec)[0]
        if base in BUILT_IN:
            packages += [p for p in BUILT_IN[base].packages if p not in packages]
    return packages


def not_applied(
    baseline: list[KnownDiscrepancy], platforms: dict[str, dict[str, Any]], frame: Any
) -> list[str]:
    """The entries for an implementation and op of this run whose platform condition does
    not hold on that implementation's code path: not applied, so not confirmed either."""
    if frame.empty:
        return []
    ops = set(frame["op"].astype(str))
    lines = []
    for entry in baseline:
        if not entry.platform or entry.op not in ops | {"*"}:
            continue
        for name, facts in sorted(platforms.items()):
            if fnmatch.fnmatchcase(name, entry.implementation) and not code_paths.condition_holds(
                entry.platform, facts
            ):
                lines.append(
                    f"{entry.op} {name} {entry.dtype} {entry.direction}, {entry.region}: needs "
                    f"{entry.platform}; here {code_paths.describe(facts)}"
                )
    return lines


def not_run_lines(skipped: dict[str, list[str]]) -> list[str]:
    """Skipped groups by reason: 'reason: n groups (first ids)'."""
    lines = []
    for reason, ids in sorted(skipped.items()):
        shown = ", ".join(ids[:4]) + (f", ... ({len(ids) - 4} more)" if len(ids) > 4 else "")
        lines.append(f"{reason}: {len(ids)} groups ({shown})")
    return lines
