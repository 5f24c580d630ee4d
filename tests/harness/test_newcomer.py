"""What a newcomer meets, on real runs: the first screen of summary.md and of the terminal
answers "did it pass, and if not, what exactly is wrong"; usage errors are one line in the
CLI's words; nothing is hidden (skipped groups) or claimed that the commands do not do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.catalogue import CATALOGUE

ROOT = Path(__file__).parents[2]


def conformance(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A user's conv2d with a planted bug, at the gate's depth, as the README runs it."""
    out = tmp_path_factory.mktemp("failing") / "report"
    done = conformance(
        "run",
        "--impl",
        "tests.harness.wrong_padding",
        "--ops",
        "conv2d",
        "--dtypes",
        "float64",
        "--seed",
        "1",
        "--database",
        "none",
        "--out",
        str(out),
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return out, done.stdout  # what the run prints; stderr holds only third-party warnings


def test_the_first_30_lines_of_the_summary_say_what_is_wrong(failing_run: tuple[Path, str]) -> None:
    out, _ = failing_run
    lines = (out / "summary.md").read_text().splitlines()
    head = " ".join(line.strip() for line in lines[:30])  # prose wraps anywhere
    assert lines[0] == "# Conformance report: FAIL"
    assert "conv2d wrong-same-padding float64 forward" in head
    assert "exceeds the bound" in head and "padding='same'" in head  # the minimal example
    match = re.search(r"repro `(repro/[^`]+)`", head)
    assert match and (out / match.group(1)).is_file()
    # no line to scroll sideways through: prose wrapped at 100, tables under 200
    assert max(len(line) for line in lines) <= 200
    prose = [line for line in lines if not line.startswith("|")]
    assert max(len(line) for line in prose) <= 100


def test_the_terminal_is_about_the_failure(failing_run: tuple[Path, str]) -> None:
    _, output = failing_run
    lines = output.strip().splitlines()
    assert len(lines) <= 40, output
    tail = "\n".join(lines[-30:])
    assert "FAILED conv2d wrong-same-padding float64 forward" in tail
    assert "minimal example: input" in tail and "repro: python" in tail
    assert "conformance: FAIL" in lines[-1]
    # side effects of Hypothesis stopping at the first failure are not further failures
    assert "examples <" not in output and "never hit" not in output
    # no pytest internals, no fixture dump of the whole baseline
    assert "KnownDiscrepancy(" not in output and "Traceback" not in output


def test_a_dtype_filter_keeps_the_invalid_calls(failing_run: tuple[Path, str]) -> None:
    out, _ = failing_run
    summary = (out / "summary.md").read_text()
    errors = summary.split("## Error conformance", 1)[1].split("##", 1)[0]
    assert re.search(r"\| conv2d\s+\| wrong-same-padding\s+\|\s+\d+", errors), errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--ops", "conv4d"],
            "--ops: unknown op 'conv4d'; did you mean 'conv3d'? (see python -m conformance list)",
        ),
        (["--dtypes", "float8"], "--dtypes: unknown dtype 'float8'"),
        (["--shard", "5/4"], "--shard: expected I/N with 1 <= I <= N, got '5/4'"),
        (["--impl", "nosuchmod"], "--impl: implementation 'nosuchmod': cannot import"),
    ],
    ids=["op", "dtype", "shard", "impl"],
)
def test_usage_errors_are_one_line_before_pytest_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = conformance("run", *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stdout == ""  # pytest never started: no 'no tests ran', no deselected count
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert not (tmp_path / "out").exists()


def test_skipped_groups_are_listed_with_their_reason(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = conformance(
        "run",
        "--impl",
        "tests.harness.wrong_padding",
        "--ops",
        "conv2d,avg_pool3d",
        "--dtypes",
        "float16",
        "--profile",
        "quick",
        "--seed",
        "2",
        "--out",
        str(out),
    )
    assert done.returncode in (0, 1), done.stderr
    not_run = (out / "summary.md").read_text().split("## Not run", 1)[1].split("\n## ", 1)[0]
    # the user's module has no conv2d_backward and no avg_pool3d at all
    assert "no conv2d_backward" in not_run and "no avg_pool3d" in not_run, not_run


def test_a_users_module_in_the_repository_root_does_not_fail_lint() -> None:
    """The README suggests the repository root for myconv.py: lint covers the project's
    own directories, as tox.ini's lint environment runs it."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed here (tox's lint environment has it)")
    commands = [
        line.split()
        for line in (ROOT / "tox.ini").read_text().split("[testenv:lint]", 1)[1].splitlines()
        if line.strip().startswith("ruff check")
    ]
    assert commands
    probe = ROOT / "myconv_lint_probe.py"
    probe.write_text("import os\nimport sys\nx=1\n")  # unused imports, unformatted
    try:
        for command in commands:
            done = subprocess.run([ruff, *command[1:]], capture_output=True, text=True, cwd=ROOT)
            assert "myconv_lint_probe" not in done.stdout + done.stderr
    finally:
        probe.unlink()


def test_the_readme_claims_what_the_commands_do() -> None:
    readme = (ROOT / "README.md").read_text()
    claimed = [int(n) for n in re.findall(r"(\d+) ops\b", readme)]
    assert claimed and set(claimed) == {len(CATALOGUE)}, claimed
    listed = conformance("list").stdout
    for name in re.findall(r"--impl[ =]([a-z][\w.:,-]*)", readme):
        for implementation in name.split(","):
            if implementation in ("reference", "myconv") or "." in implementation:
                continue
            assert f"  {implementation} " in listed, implementation
    # every built-in implementation is in the README's table
    block = listed.split("implementations", 1)[1].split("\n\n", 1)[0]
    for line in block.splitlines()[1:]:
        name = line.split()[0] if line.strip() else ""
        if name and name not in ("reference", "package.module[:attr]"):
            assert f"`{name}`" in readme, name


def test_the_campaign_writes_the_network_arithmetic_rows(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = conformance(
        "run", "--ops", "parameter_count,flops", "--profile", "quick", "--out", str(out)
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    results = summary.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert "| parameter_count" in results and "| flops" in results
    assert "| receptive_field" not in results  # --ops selects among the checks too
    coverage = summary.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    assert "**flops**:" in coverage
