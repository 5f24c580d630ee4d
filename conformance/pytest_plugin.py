"""pytest plugin: the recorder, the implementation under test, and the report at the end.

    pytest tests/conformance --conformance-report DIR [--conformance-impl torch|reference|mod:attr]

Loaded by ``-p conformance.pytest_plugin`` (pyproject's addopts).
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import importlib
import json
import os
import pkgutil
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import conformance.profiles  # noqa: F401  (registers the Hypothesis profiles)
from conformance import timing
from conformance.arithmetic_ops import ARITHMETIC_OPS
from conformance.baseline import KnownDiscrepancy, load_baseline
from conformance.catalogue import CATALOGUE
from conformance.dtypes import DTYPES
from conformance.implementations import BUILT_IN, code_paths, load_implementation
from conformance.implementations.isolation import DEFAULT_TIME_LIMIT_S, InProcess, Isolated
from conformance.recorder import Recorder
from conformance.report import write_report
from conformance.reproduce import verify
from conformance.results import FAILING, GROUP, PARTS, Spool, frame_from_spools, remove_spools
from conformance.tables import discrepancies, missed_regions, results_table
from conformance.verdict import (
    ENDED_KEY,
    NOT_APPLIED_KEY,
    NOT_RUN_KEY,
    SHORTFALLS_KEY,
    example_text,
    group_title,
    repro_name,
    reproduced_text,
    verdict,
)

RECORDER = pytest.StashKey[Recorder]()
SHORTFALLS = pytest.StashKey[list[str]]()
ENDED = pytest.StashKey[list[str]]()
STARTED = pytest.StashKey[tuple[float, str]]()
SPOOL_DIR = pytest.StashKey[Path]()
TEMPORARY = pytest.StashKey[bool]()
LOST_WORKERS = pytest.StashKey[list[str]]()
FRAME = pytest.StashKey[Any]()
LOADED = pytest.StashKey[dict[str, Any]]()
PLATFORMS = pytest.StashKey[dict[str, dict[str, Any]]]()
FAILED_TESTS = pytest.StashKey[dict[str, str]]()
GROUP_PROPERTY = "conformance_group"
SKIPPED = pytest.StashKey[dict[str, list[str]]]()
PROGRESS = pytest.StashKey[dict[str, Any]]()
EXAMPLES_PROPERTY = "conformance_examples"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption(
        "--conformance-report",
        metavar="DIR",
        default=None,
        help="write results.csv and summary.md for every recorded example into DIR",
    )
    group.addoption(
        "--conformance-min-examples",
        metavar="N",
        type=int,
        default=0,
        help="fail the run if an op x dtype x direction that ran recorded fewer than N "
        "examples, or if a coverage region of an op that ran was never hit",
    )
    group.addoption(
        "--conformance-target",
        action="store_true",
        help="steer Hypothesis toward each op's largest bound ratio (hypothesis.target). It "
        "concentrates examples near the worst case found, at the cost of coverage: use it "
        "with the thorough profile, not for the gate",
    )
    group.addoption(
        "--conformance-baseline",
        metavar="CSV",
        default=None,
        help="known discrepancies (default: reports/baseline.csv under the rootdir)",
    )
    group.addoption(
        "--conformance-shard",
        metavar="I/N",
        default=None,
        help="run only the I-th (1-based) of N disjoint slices of the catalogue's ops; "
        "'python -m conformance report' merges the shards' results into one report",
    )
    group.addoption(
        "--conformance-impl",
        metavar="SPEC[,SPEC...]",
        default="torch",
        help="implementations under test, comma-separated: a built-in name (python -m "
        "conformance list), reference, or package.module:attribute",
    )
    group.addoption(
        "--conformance-progress",
        action="store_true",
        help="print a progress line (groups done, examples, elapsed, estimate) every 5 s",
    )
    group.addoption(
        "--conformance-device",
        metavar="DEVICE",
        default=None,
        help="the device torch runs on (cpu, cuda, cuda:1, mps; default cpu)",
    )
    group.addoption(
        "--conformance-ops",
        metavar="OP[,OP...]",
        default=None,
        help="run only these catalogue ops",
    )
    group.addoption(
        "--conformance-isolation",
        choices=("process", "none"),
        default="process",
        help="process (default): every implementation call in a helper process, so that a "
        "call that kills its process or never returns is a verdict (crash, hang); none: calls "
        "in the test process itself",
    )
    group.addoption(
        "--conformance-time-limit",
        metavar="SECONDS",
        type=float,
        default=None,
        help="a call that has not returned after this long is a hang (default: the "
        "implementation's call_time_limit, else 5 s)",
    )
    group.addoption(
        "--conformance-seed",
        metavar="N",
        type=int,
        default=None,
        help="the run's seed when no --hypothesis-seed is given (python -m conformance run "
        "draws one): each group draws from its own seed derived from it, and the example "
        "database still replays its failures first",
    )
    group.addoption(
        "--conformance-dtypes",
        metavar="DTYPE[,DTYPE...]",
        default=None,
        help="run only these dtypes (float64, float32, float16, bfloat16)",
    )


def _worker_input(config: pytest.Config) -> dict[str, Any] | None:
    return getattr(config, "workerinput", None)


def _import_every_module() -> None:
    """Import all of conformance and reference up front. Hypothesis biases generation with
    constants found in the local modules loaded so far; loading the same set in every
    process (a serial run, an xdist worker) makes a seed give the same examples in each."""
    import conformance
    import reference

    for package in (conformance, reference):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            # the adapters import their frameworks (jax, onnx...), optional and heavy: each
            # loads when its implementation does
            adapter = module.name.startswith("conformance.implementations.")
            if not module.name.endswith("__main__") and not adapter:
                importlib.import_module(module.name)


def pytest_configure(config: pytest.Config) -> None:
    if STARTED in config.stash:  # configured once per process: never reset the spools
        return
    _CONFIG["config"] = config
    _import_every_module()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    config.stash[STARTED] = (time.time(), started)
    config.stash[LOST_WORKERS] = []
    worker = _worker_input(config)
    if worker is not None:  # an xdist worker spools where its controller said
        directory, name = Path(worker["conformance_spool"]), worker["workerid"]
    else:
        report = config.getoption("conformance_report")
        config.stash[TEMPORARY] = report is None
        directory = (
            Path(tempfile.mkdtemp(prefix="conformance-")) if report is None else Path(report)
        )
        remove_spools(directory)  # a previous run's leftovers are not this run's rows
        name = "main"
    config.stash[SPOOL_DIR] = directory
    config.stash[RECORDER] = Recorder(Spool(directory, name))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker where to spool its rows."""
    node.workerinput["conformance_spool"] = str(node.config.stash[SPOOL_DIR])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    if error is not None:
        node.config.stash[LOST_WORKERS].append(f"{node.gateway.id}: {error}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--conformance-shard must be I/N, got {text!r}") from None
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--conformance-shard needs 1 <= I <= N, got {text!r}")
    return index, count


def shard_ops(index: int, count: int) -> set[str]:
    """The ops of shard ``index`` of ``count``: every count-th catalogue op, so that each
    shard gets a share of every family and an op's groups stay together."""
    return {spec.name for position, spec in enumerate(CATALOGUE) if position % count == index - 1}


def _names(config: pytest.Config, option: str, valid: Iterable[str]) -> set[str] | None:
    given = config.getoption(option)
    if given is None:
        return None
    names = {name.strip() for name in given.split(",") if name.strip()}
    unknown = sorted(names - set(valid))
    if unknown or not names:
        flag = "--" + option.replace("_", "-")
        raise pytest.UsageError(
            f"{flag}: unknown {', '.join(unknown) or 'nothing given'}; "
            f"choose from {', '.join(valid)}"
        )
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("conformance_shard")
    ops = _names(config, "conformance_ops", [spec.name for spec in CATALOGUE] + [*ARITHMETIC_OPS])
    dtypes = _names(config, "conformance_dtypes", DTYPES)
    if shard is not None:
        in_shard = shard_ops(*parse_shard(shard))
        ops = in_shard if ops is None else ops & in_shard
    if ops is None and dtypes is None:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        spec, dtype = params.get("spec"), params.get("dtype")
        checks = getattr(getattr(item, "function", None), "arithmetic_ops", None)
        if checks is not None:  # network arithmetic: selected by its op names, any dtype
            (keep if ops is None or set(checks) & ops else drop).append(item)
            continue
        wanted = spec is None or (
            (ops is None or spec.name in ops)
            and (dtypes is None or dtype is None or dtype in dtypes)  # invalid calls: no dtype
        )
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def conformance_recorder(request: pytest.FixtureRequest) -> Recorder:
    return request.config.stash[RECORDER]


def baseline_path(config: pytest.Config) -> Path:
    given = config.getoption("conformance_baseline")
    return Path(given) if given else config.rootpath / "reports" / "baseline.csv"


@pytest.fixture(scope="session")
def conformance_baseline(request: pytest.FixtureRequest) -> list[KnownDiscrepancy]:
    try:
        return load_baseline(baseline_path(request.config))
    except ValueError as error:
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def conformance_dtypes(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The dtypes the run selected (--conformance-dtypes), in DTYPES order."""
    chosen = _names(request.config, "conformance_dtypes", DTYPES)
    return tuple(d for d in DTYPES if chosen is None or d in chosen)


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("conformance_target"))


def implementation_specs(config: pytest.Config) -> list[str]:
    given = str(config.getoption("conformance_impl"))
    return code_paths.split_specs(given) or ["torch"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Several implementations: every test that takes one runs once per implementation."""
    specs = implementation_specs(metafunc.config)
    if "implementation" in metafunc.fixturenames and len(specs) > 1:
        metafunc.parametrize("implementation", specs, indirect=True, scope="session")


@pytest.fixture(scope="session")
def implementation(request: pytest.FixtureRequest) -> Any:
    spec = getattr(request, "param", None) or implementation_specs(request.config)[0]
    loaded = request.config.stash.setdefault(LOADED, {})
    if spec not in loaded:
        try:
            loaded[spec] = runner(request.config, spec)
        except ValueError as error:
            pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)
        request.config.add_cleanup(loaded[spec].close)
        record_platform(request.config, loaded[spec])
    return loaded[spec]


def runner(config: pytest.Config, spec: str) -> Any:
    """The implementation named ``spec``, wrapped so that its calls run isolated in helper
    processes (or, with --conformance-isolation none, in this one)."""
    device = config.getoption("conformance_device")
    local = load_implementation(spec, device=device)
    environment = code_paths.environment(spec)
    in_process = config.getoption("conformance_isolation") == "none"
    if in_process and environment:
        raise ValueError(
            f"implementation {spec!r}: a code path runs only in a helper process of its own "
            "(--isolation process)"
        )
    limit = config.getoption("conformance_time_limit") or getattr(
        local, "call_time_limit", DEFAULT_TIME_LIMIT_S
    )
    isolated = Isolated(spec, local, device, environment, float(limit))
    if in_process:
        # the ordinary calls here; those the baseline says damage their process, isolated
        return InProcess(local, isolated)
    return isolated


def record_platform(config: pytest.Config, implementation: Any) -> None:
    """The implementation's code path (what its helper process says decides it), spooled for
    the controller's header: platform-<process>.json beside the rows."""
    facts = config.stash.setdefault(PLATFORMS, {})
    facts[implementation.name] = implementation.platform()
    worker = _worker_input(config)
    name = "main" if worker is None else worker["workerid"]
    parts = config.stash[SPOOL_DIR] / PARTS
    if parts.is_dir():
        (parts / f"platform-{name}.json").write_text(json.dumps(facts), encoding="utf-8")


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
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_header(config: pytest.Config, examples: int, partial: str) -> dict[str, Any]:
    began, started = config.stash[STARTED]
    duration = time.time() - began
    return {
        "started (UTC)": started,
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


def shortfalls(config: pytest.Config, frame: Any) -> list[str]:
    """What falls short of --conformance-min-examples: thin groups and unhit regions."""
    minimum = config.getoption("conformance_min_examples")
    if not minimum or frame.empty:
        return []
    table = results_table(frame)
    # A failing group stops at its first failure (Hypothesis then shrinks it): its count is
    # not thin, and an op with a failing group is not judged on coverage either.
    thin = table[(table["examples"] < minimum) & (table["failed"] == 0)]
    found = [
        f"{row.op} {row.implementation} {row.dtype} {row.direction}: {row.examples} examples"
        f" < {minimum}"
        for row in thin.itertuples()
    ]
    failing_ops = set(table.loc[table["failed"] > 0, "op"])
    missed = [m for m in missed_regions(frame, CATALOGUE) if m.split(":")[0] not in failing_ops]
    return found + [f"coverage region never hit: {m}" for m in missed]


def _partial(session: pytest.Session) -> str:
    """Why the run did not measure all it set out to ('' when it did)."""
    lost = session.config.stash[LOST_WORKERS]
    if lost:
        return "xdist workers lost: " + "; ".join(lost)
    if session.exitstatus == pytest.ExitCode.INTERRUPTED:
        return "interrupted"
    if session.exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "internal error"
    if session.shouldfail or session.shouldstop:
        return f"stopped early: {session.shouldfail or session.shouldstop}"
    return ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    recorder = config.stash[RECORDER]
    if recorder.spool is not None:
        recorder.spool.close()
    directory = config.stash[SPOOL_DIR]
    parts = directory / PARTS
    worker = _worker_input(config)
    if "first test" in timing.MARKS and parts.is_dir():  # a process that ran tests
        timing.write_process_split(parts, "main" if worker is None else worker["workerid"])
    if worker is not None:
        return  # the controller merges every worker's spool
    report_began = time.perf_counter()
    frame = frame_from_spools(directory)
    partial = _partial(session)
    # an interrupted run is thin by construction: its status says interrupted, not thin
    config.stash[SHORTFALLS] = [] if partial else shortfalls(config, frame)
    config.stash[ENDED] = ended_early(config.stash.get(FAILED_TESTS, {}), frame)
    platforms: dict[str, dict[str, Any]] = {}
    if PLATFORMS in config.stash:
        known: dict[str, dict[str, Any]] = config.stash[PLATFORMS]
        platforms.update(known)
    if parts.is_dir():
        platforms.update(read_platforms(parts))
    config.stash[FRAME] = frame
    if config.stash[TEMPORARY]:
        _agree(
            session,
            frame,
            {SHORTFALLS_KEY: config.stash[SHORTFALLS], ENDED_KEY: config.stash[ENDED]},
        )
        shutil.rmtree(directory, ignore_errors=True)
        return
    splits = timing.read_splits(parts) if parts.is_dir() else []
    if frame.empty and not config.stash[ENDED]:
        timing.remove_splits(parts)
        return
    frame = verify(frame)
    config.stash[FRAME] = frame
    baseline = load_baseline(baseline_path(config))
    header = run_header(config, len(frame), partial)
    for name, facts in sorted(platforms.items()):
        header[f"code path ({name})"] = code_paths.describe(facts)
    header.update(timing.split_text(splits, None))
    header[SHORTFALLS_KEY] = config.stash[SHORTFALLS]
    header[ENDED_KEY] = config.stash[ENDED]
    header[NOT_RUN_KEY] = not_run_lines(config.stash.get(SKIPPED, {}))
    header[NOT_APPLIED_KEY] = not_applied(baseline, platforms, frame)
    _agree(session, frame, header)
    write_report(
        frame,
        directory,
        header,
        CATALOGUE,
        baseline,
        late=lambda: timing.split_text(splits, time.perf_counter() - report_began),
    )
    timing.remove_splits(parts)
    remove_spools(directory)


def _agree(session: pytest.Session, frame: Any, header: dict[str, Any]) -> None:
    """The exit status says what the report says: a FAIL verdict fails the run."""
    if verdict(frame, header) == "FAIL" and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


def group_seed(seed: Any, item: pytest.Item) -> int:
    """The Hypothesis seed of one group under a run's --seed: the run's seed, the test and
    its parameters (op, dtype, direction), hashed. Hypothesis gives every test of a seeded run
    the same random stream, and the groups of an op share one strategy, so without this each
    op's dtype x direction groups drew the same configurations (conv2d's 568 rows were 142
    distinct examples). The implementation is left out by design: implementations side by
    side are judged on the same examples. Stable across processes: serial and xdist agree."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    named = sorted(
        (key, str(getattr(value, "name", value)))
        for key, value in params.items()
        if key != "implementation"
    )
    group = f"{getattr(item, 'originalname', item.name)}|{named}"
    digest = hashlib.sha256(f"{seed}|{group}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Attach the number of examples a test recorded to its report (xdist carries it to the
    controller, whose progress line counts them). Under --seed, give each campaign group a
    seed of its own (group_seed)."""
    recorder = item.config.stash.get(RECORDER, None)
    before = len(recorder) if recorder is not None else 0
    seed = run_seed(item.config)
    if "conformance_recorder" in getattr(item, "fixturenames", ()):  # a campaign test
        item.user_properties.append((GROUP_PROPERTY, group_of(item)))
    function = getattr(item, "obj", None)
    # a test with a @seed of its own keeps it
    seeded = seed is not None and getattr(function, "_hypothesis_internal_use_seed", 0) is None
    if seeded:
        function._hypothesis_internal_use_seed = group_seed(seed, item)  # type: ignore[union-attr]
    timing.mark("first test")
    began = time.perf_counter()
    try:
        yield
    finally:
        timing.add("test calls", time.perf_counter() - began)
        if seeded:
            function._hypothesis_internal_use_seed = None  # type: ignore[union-attr]
    if recorder is not None:
        item.user_properties.append((EXAMPLES_PROPERTY, len(recorder) - before))


def group_of(item: pytest.Item) -> str:
    """The report's group of a test, 'ops|implementation|dtype|direction', as far as its
    parameters say ('' where they do not: any; an invalid-call test's direction is 'invalid
    call'; a network-arithmetic test names its ops)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    spec = params.get("spec")
    ops = getattr(getattr(item, "function", None), "arithmetic_ops", None)
    op = getattr(spec, "name", "") or ",".join(ops or ()) or getattr(item, "name", "")
    implementation = getattr(getattr(item, "funcargs", {}).get("implementation"), "name", "")
    direction = params.get("direction") or (
        "invalid call" if getattr(item, "originalname", "") == "test_invalid_call" else ""
    )
    return "|".join((str(op), str(implementation), str(params.get("dtype", "")), direction))


def last_words(report: pytest.TestReport) -> str:
    """What a failed test said last: its innermost error line ('E   ...'), else its last
    line that is not drawing."""
    lines = report.longreprtext.strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ") and line[1:].strip()]
    plain = [line.strip() for line in lines if line.strip().strip("+-|=_ ")]
    found = errors[-1] if errors else plain[-1] if plain else report.outcome
    return found[:300]


def ended_early(failed: dict[str, str], frame: Any) -> list[str]:
    """The groups whose test failed without a failing row of their own to say why (a
    Hypothesis error, a fixture's, a lost example): 'group: the test's last words'."""
    failing = frame[frame["verdict"].isin(FAILING)] if not frame.empty else frame
    rows = failing[GROUP].astype(str).to_dict("records") if not failing.empty else []
    lines = []
    for group, reason in sorted(failed.items()):
        ops, implementation, dtype, direction = ([*group.split("|"), "", "", "", ""])[:4]
        explained = any(
            row["op"] in ops.split(",")
            and implementation in ("", row["implementation"])
            and dtype in ("", row["dtype"])
            and direction in ("", row["direction"])
            for row in rows
        )
        if not explained:
            title = " ".join(part for part in (ops, implementation, dtype, direction) if part)
            lines.append(f"{title}: {reason}")
    return lines


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[PROGRESS] = {
        "total": len(session.items),
        "done": 0,
        "examples": 0,
        "began": time.time(),
        "shown": 0.0,
    }


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Controller side: skip reasons for the report, and the progress line."""
    config = _CONFIG.get("config")
    if config is None or _worker_input(config) is not None:
        return
    group = dict(report.user_properties).get(GROUP_PROPERTY)
    if report.failed and group is not None:  # a group that failed: a discrepancy, or early
        config.stash.setdefault(FAILED_TESTS, {})[str(group)] = last_words(report)
    if report.skipped and report.when in ("setup", "call"):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        group = report.nodeid.rsplit("[", 1)[-1].rstrip("]")
        config.stash.setdefault(SKIPPED, {}).setdefault(reason, []).append(group)
    progress = config.stash.get(PROGRESS, None)
    if progress is None or report.when != "teardown":
        return
    progress["done"] += 1
    progress["examples"] += sum(
        int(v)  # type: ignore[call-overload]
        for k, v in report.user_properties
        if k == EXAMPLES_PROPERTY
    )
    _show_progress(config, progress)


_CONFIG: dict[str, pytest.Config] = {}


def _show_progress(config: pytest.Config, progress: dict[str, Any], final: bool = False) -> None:
    """A line a person can follow: groups done of total, examples, elapsed, what remains."""
    if not config.getoption("conformance_progress"):
        return
    now = time.time()
    # every tenth of the groups, and at most every 5 s: about ten lines a run, however slow
    step = max(1, progress["total"] // 10)
    crossed = progress["done"] // step != progress.setdefault("shown_step", 0)
    finished = progress["done"] >= progress["total"]
    if not final and not finished and (not crossed or now - progress["shown"] < 5):
        return
    progress["shown"], progress["shown_step"] = now, progress["done"] // step
    elapsed = now - progress["began"]
    done, total = progress["done"], progress["total"]
    remaining = elapsed / done * (total - done) if done else float("nan")
    estimate = f"about {remaining:.0f} s left" if done else "estimating"
    line = (
        f"conformance: {done}/{total} groups, {progress['examples']:,} examples, "
        f"{elapsed:.0f} s elapsed, {estimate}"
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    """With the progress line on, no pytest dots: the line and the verdict say it all."""
    if not config.getoption("conformance_progress"):
        return None
    if report.when == "call" or (report.when == "setup" and not report.passed):
        return report.outcome, "", ""
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The verdict, and for each failing group its minimal example and snippet's path: what
    a person needs, in a few lines per group."""
    for shortfall in config.stash.get(SHORTFALLS, []):
        terminalreporter.write_line(f"conformance: FAILED: {shortfall}", red=True)
    for line in config.stash.get(ENDED, []):
        terminalreporter.write_line(f"conformance: FAILED, ended early: {line}", red=True)
    directory = config.getoption("conformance_report")
    frame = config.stash.get(FRAME, None)
    if directory is None or frame is None or (frame.empty and not config.stash.get(ENDED, [])):
        return
    found = discrepancies(frame)
    for entry in found:
        row = entry["row"]
        terminalreporter.write_line(
            f"conformance: FAILED {group_title(entry)} ({row.get('verdict')})", red=True
        )
        terminalreporter.write_line(f"  problem: {row.get('problem')}")
        terminalreporter.write_line(f"  minimal example: {example_text(row)}")
        if isinstance(row.get("repro"), str):
            terminalreporter.write_line(
                f"  repro: python {Path(directory) / repro_name(entry)}{reproduced_text(row)}"
            )
    header = {
        SHORTFALLS_KEY: config.stash.get(SHORTFALLS, []),
        ENDED_KEY: config.stash.get(ENDED, []),
        "partial": _partial_text(config),
    }
    terminalreporter.write_line(
        f"conformance: {verdict(frame, header)}: {len(frame):,} examples, {len(found)} "
        f"discrepant groups; report in {directory}/summary.md"
    )


def _partial_text(config: pytest.Config) -> str:
    lost: list[str] = config.stash[LOST_WORKERS] if LOST_WORKERS in config.stash else []
    return "; ".join(lost) or "no"
