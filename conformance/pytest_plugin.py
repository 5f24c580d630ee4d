"""pytest plugin: the recorder, the implementation under test, and the report at the end.

    pytest tests/conformance --conformance-report DIR [--conformance-impl torch|reference|mod:attr]

Loaded by ``-p conformance.pytest_plugin`` (pyproject's addopts).
"""

from __future__ import annotations

import datetime
import importlib
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
from conformance.baseline import KnownDiscrepancy, load_baseline
from conformance.catalogue import CATALOGUE
from conformance.dtypes import DTYPES
from conformance.implementations import BUILT_IN, load_implementation
from conformance.recorder import Recorder
from conformance.report import discrepancies, missed_regions, results_table, write_report
from conformance.results import Spool, frame_from_spools, remove_spools

RECORDER = pytest.StashKey[Recorder]()
SHORTFALLS = pytest.StashKey[list[str]]()
STARTED = pytest.StashKey[tuple[float, str]]()
SPOOL_DIR = pytest.StashKey[Path]()
TEMPORARY = pytest.StashKey[bool]()
LOST_WORKERS = pytest.StashKey[list[str]]()
FRAME = pytest.StashKey[Any]()
LOADED = pytest.StashKey[dict[str, Any]]()


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
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)


def pytest_configure(config: pytest.Config) -> None:
    if STARTED in config.stash:  # configured once per process: never reset the spools
        return
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
    ops = _names(config, "conformance_ops", [spec.name for spec in CATALOGUE])
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
        wanted = spec is None or (
            (ops is None or spec.name in ops) and (dtypes is None or dtype in dtypes)
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
def conformance_target(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("conformance_target"))


def implementation_specs(config: pytest.Config) -> list[str]:
    given = str(config.getoption("conformance_impl"))
    return [spec.strip() for spec in given.split(",") if spec.strip()] or ["torch"]


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
            loaded[spec] = load_implementation(
                spec, device=request.config.getoption("conformance_device")
            )
        except ValueError as error:
            pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)
    return loaded[spec]


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
        "profile": config.getoption("hypothesis_profile", None)
        or os.environ.get("CONFORMANCE_PROFILE", "ci"),
        "seed": config.getoption("hypothesis_seed", None) or "random",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{package: _version(package) for package in _packages(config)},
    }


def _packages(config: pytest.Config) -> list[str]:
    """The packages whose versions a run's header states: the harness's and those of every
    built-in implementation under test (the baseline's confirmed_with is compared to them)."""
    packages = ["torch", "numpy", "hypothesis", "pandas"]
    for spec in implementation_specs(config):
        if spec in BUILT_IN:
            packages += [p for p in BUILT_IN[spec].packages if p not in packages]
    return packages


def shortfalls(config: pytest.Config, frame: Any) -> list[str]:
    """What falls short of --conformance-min-examples: thin groups and unhit regions."""
    minimum = config.getoption("conformance_min_examples")
    if not minimum or frame.empty:
        return []
    table = results_table(frame)
    thin = table[table["examples"] < minimum]
    found = [
        f"{row.op} {row.implementation} {row.dtype} {row.direction}: {row.examples} examples"
        f" < {minimum}"
        for row in thin.itertuples()
    ]
    return found + [f"coverage region never hit: {m}" for m in missed_regions(frame, CATALOGUE)]


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
    if _worker_input(config) is not None:
        return  # the controller merges every worker's spool
    directory = config.stash[SPOOL_DIR]
    frame = frame_from_spools(directory)
    config.stash[SHORTFALLS] = shortfalls(config, frame)
    if config.stash[SHORTFALLS] and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[FRAME] = frame
    if config.stash[TEMPORARY]:
        shutil.rmtree(directory, ignore_errors=True)
        return
    if frame.empty:
        return
    baseline = load_baseline(baseline_path(config))
    header = run_header(config, len(frame), _partial(session))
    write_report(frame, directory, header, CATALOGUE, baseline)
    remove_spools(directory)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for shortfall in config.stash.get(SHORTFALLS, []):
        terminalreporter.write_line(f"conformance: FAILED: {shortfall}", red=True)
    directory = config.getoption("conformance_report")
    frame = config.stash.get(FRAME, None)
    if directory is None or frame is None or frame.empty:
        return
    found = discrepancies(frame)
    terminalreporter.write_line(
        f"conformance: {len(frame)} examples, {len(found)} discrepant groups; "
        f"report in {directory}/summary.md"
    )
