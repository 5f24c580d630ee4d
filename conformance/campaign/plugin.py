"""pytest plugin: the recorder, the implementation under test, and the report at the end.

    pytest tests/conformance --conformance-report DIR [--conformance-impl torch|reference|mod:attr]

Loaded by ``-p conformance.campaign.plugin`` (pyproject's addopts).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import conformance.campaign.profiles  # noqa: F401  (registers the Hypothesis profiles)
from conformance.campaign import timing
from conformance.campaign.accounting import ended_early, group_of, last_words, shortfalls
from conformance.campaign.arithmetic_ops import ARITHMETIC_OPS
from conformance.campaign.header import (
    implementation_specs,
    not_applied,
    not_run_lines,
    read_platforms,
    run_header,
    run_seed,
)
from conformance.campaign.recorder import Recorder
from conformance.campaign.startup import prepare_process, worker_input
from conformance.campaign.terminal import show_progress, terminal_lines
from conformance.catalogue import CATALOGUE
from conformance.catalogue.dtypes import DTYPES
from conformance.implementations import code_paths, load_implementation
from conformance.implementations.isolation import DEFAULT_TIME_LIMIT_S, InProcess, Isolated
from conformance.reporting.baseline import KnownDiscrepancy, load_baselines
from conformance.reporting.report import write_report
from conformance.reporting.reproduce import verify
from conformance.reporting.results import (
    PARTS,
    Spool,
    frame_from_spools,
    remove_spools,
)
from conformance.reporting.verdict import (
    ENDED_KEY,
    NOT_APPLIED_KEY,
    NOT_RUN_KEY,
    SHORTFALLS_KEY,
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
        action="append",
        default=[],
        help="known discrepancies of your own, added to the suite's shipped baseline (repeatable)",
    )
    group.addoption(
        "--conformance-no-shipped-baseline",
        action="store_true",
        help="leave the suite's shipped baseline out: only --conformance-baseline files apply",
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


def pytest_configure(config: pytest.Config) -> None:
    if STARTED in config.stash:  # configured once per process: never reset the spools
        return
    _CONFIG["config"] = config
    prepare_process(config)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    config.stash[STARTED] = (time.time(), started)
    config.stash[LOST_WORKERS] = []
    worker = worker_input(config)
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


# directions by expected cost: a derivative calls the implementation more than once per
# example, a compiler builds more per configuration; invalid calls and arithmetic cost least
COSTLIEST_FIRST = ("double_backward", "backward", "jvp", "forward")


def costliest_first(items: list[pytest.Item]) -> None:
    """Order the groups costliest first, stably (an op's groups keep their order within a
    direction). Under xdist, which hands each worker the next group as it finishes one, the
    longest groups then start first and the short ones fill in at the end, instead of a long
    group starting last and running alone (torch-compile over three ops: 268 s with the
    catalogue's order, one worker idle for its last 80 s). Each group draws from a seed of
    its own (group_seed), so its examples do not depend on the order."""

    def rank(item: pytest.Item) -> int:
        params = getattr(getattr(item, "callspec", None), "params", {})
        direction = params.get("direction")
        return (
            COSTLIEST_FIRST.index(direction)
            if direction in COSTLIEST_FIRST
            else len(COSTLIEST_FIRST)
        )

    items.sort(key=rank)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    costliest_first(items)
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


def baseline(config: pytest.Config) -> list[KnownDiscrepancy]:
    """The shipped baseline (unless left out) and the user's files."""
    paths = [Path(p) for p in config.getoption("conformance_baseline")]
    return load_baselines(paths, not config.getoption("conformance_no_shipped_baseline"))


@pytest.fixture(scope="session")
def conformance_baseline(request: pytest.FixtureRequest) -> list[KnownDiscrepancy]:
    try:
        return baseline(request.config)
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
    worker = worker_input(config)
    name = "main" if worker is None else worker["workerid"]
    parts = config.stash[SPOOL_DIR] / PARTS
    if parts.is_dir():
        (parts / f"platform-{name}.json").write_text(json.dumps(facts), encoding="utf-8")


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
    worker = worker_input(config)
    if "first test" in timing.MARKS and parts.is_dir():  # a process that ran tests
        timing.write_process_split(parts, "main" if worker is None else worker["workerid"])
    if worker is not None:
        return  # the controller merges every worker's spool
    report_began = time.perf_counter()
    frame = frame_from_spools(directory)
    partial = _partial(session)
    # an interrupted run is thin by construction: its status says interrupted, not thin
    selected = bool(config.getoption("keyword") or config.getoption("markexpr"))
    minimum = config.getoption("conformance_min_examples")
    config.stash[SHORTFALLS] = [] if partial else shortfalls(minimum, frame, not selected)
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
    entries = baseline(config)
    header = run_header(config, config.stash[STARTED], len(frame), partial)
    for name, facts in sorted(platforms.items()):
        header[f"code path ({name})"] = code_paths.describe(facts)
    header.update(timing.split_text(splits, None))
    header[SHORTFALLS_KEY] = config.stash[SHORTFALLS]
    header[ENDED_KEY] = config.stash[ENDED]
    header[NOT_RUN_KEY] = not_run_lines(config.stash.get(SKIPPED, {}))
    header[NOT_APPLIED_KEY] = not_applied(entries, platforms, frame)
    _agree(session, frame, header)
    write_report(
        frame,
        directory,
        header,
        CATALOGUE,
        entries,
        late=lambda: timing.split_text(splits, time.perf_counter() - report_began),
    )
    timing.remove_splits(parts)
    remove_spools(directory)


def _agree(session: pytest.Session, frame: Any, header: dict[str, Any]) -> None:
    """The exit status says what the report says: a FAIL verdict fails the run."""
    if verdict(frame, header) == "FAIL" and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """A serial run's count of groups (under xdist, the controller collects nothing: the
    workers tell it theirs, pytest_xdist_node_collection_finished)."""
    _start_progress(session.config, len(session.items))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """xdist controller: every worker collects every group; the first to say how many sets
    the progress line's total."""
    if PROGRESS not in node.config.stash:
        _start_progress(node.config, len(ids))


def _start_progress(config: pytest.Config, total: int) -> None:
    began = config.stash[STARTED][0] if STARTED in config.stash else time.time()
    config.stash[PROGRESS] = {"total": total, "done": 0, "examples": 0, "began": began}
    config.stash[PROGRESS]["shown"] = time.time()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Controller side: skip reasons for the report, and the progress line."""
    config = _CONFIG.get("config")
    if config is None or worker_input(config) is not None:
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
    show_progress(config, progress)


_CONFIG: dict[str, pytest.Config] = {}


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
    frame = config.stash.get(FRAME, None)
    shortfalls_, ended = config.stash.get(SHORTFALLS, []), config.stash.get(ENDED, [])
    partial = _partial_text(config)
    directory = config.getoption("conformance_report")
    for line, red in terminal_lines(frame, directory, shortfalls_, ended, partial):
        terminalreporter.write_line(line, red=red)


def _partial_text(config: pytest.Config) -> str:
    lost: list[str] = config.stash[LOST_WORKERS] if LOST_WORKERS in config.stash else []
    return "; ".join(lost) or "no"
