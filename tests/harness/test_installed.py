"""The suite as another repository's CI uses it (docs/ci.md): a wheel built from this clone,
installed into a fresh virtualenv, run with the installed `conformance` command from an
empty directory that holds only the user's module. Torch and the other dependencies come
from the environment running the tests (its site-packages added after the virtualenv's own,
so that the wheel shadows any suite installed there), so that nothing is downloaded twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[2]
USER_MODULE = """
import reference

name = "mykernels"


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    out = reference.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode)
    return out * 1.001 if groups > 1 else out  # a planted bug: grouped convolutions are off
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the virtualenv's bin directory, an empty working directory with mykernels.py)."""
    base = tmp_path_factory.mktemp("installed")
    dist, venv, work = base / "dist", base / "venv", base / "work"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = dist.glob("convconformance-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    (site,) = venv.glob("lib/python*/site-packages")
    parents = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "parent_environment.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    )
    install = subprocess.run(
        # --ignore-installed: where the suite is installed in the parent environment too (tox
        # installs it there), the wheel still goes into this one
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
         "--ignore-installed", "--disable-pip-version-check", "--quiet", str(wheel)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    work.mkdir()
    (work / "mykernels.py").write_text(USER_MODULE)
    return bin_dir, work


def _conformance(installed: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir, work = installed
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(bin_dir / "conformance"), *args],
        capture_output=True, text=True, cwd=work, env=environment, timeout=900,
    )  # fmt: skip


def test_the_wheel_is_what_runs(installed: tuple[Path, Path]) -> None:
    bin_dir, work = installed
    probe = subprocess.run(
        [str(bin_dir / "python"), "-c", "import conformance; print(conformance.__file__)"],
        capture_output=True, text=True, cwd=work, check=True,
    )  # fmt: skip
    assert str(bin_dir.parent) in probe.stdout, probe.stdout


def test_the_installed_command_finds_the_users_module(installed: tuple[Path, Path]) -> None:
    done = _conformance(
        installed, "run", "--impl", "mykernels", "--ops", "conv2d", "--dtypes", "float64",
        "--profile", "quick", "--seed", "3", "--out", "report", "-n", "2",
        "--", "-k", "forward",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED conv2d mykernels float64 forward" in done.stdout
    assert "groups," in done.stdout  # the progress line, with workers
    report = installed[1] / "report"
    summary = (report / "summary.md").read_text()
    assert summary.startswith("# Conformance report: FAIL")
    (script,) = (report / "repro").glob("conv2d-mykernels-float64-forward.py")
    replay = subprocess.run(
        [str(installed[0] / "python"), str(script)], capture_output=True, text=True,
        cwd=installed[1],
    )  # fmt: skip
    assert replay.returncode == 1 and "REPRODUCED" in replay.stdout, replay.stdout


def test_the_shipped_baseline_applies_outside_the_repository(
    installed: tuple[Path, Path],
) -> None:
    # max pooling's windows with no element: torch's known defect, on every CPU
    done = _conformance(
        installed, "run", "--impl", "torch", "--ops", "max_pool1d", "--dtypes", "float64",
        "--profile", "quick", "--seed", "5", "--out", "torch-report",
        "--", "-k", "forward or backward",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    frame = pd.read_parquet(installed[1] / "torch-report" / "results.parquet")
    assert (frame["verdict"] == "known").any()
    left_out = _conformance(
        installed, "run", "--impl", "torch", "--ops", "max_pool1d", "--dtypes", "float64",
        "--profile", "quick", "--seed", "5", "--out", "bare-report", "--no-shipped-baseline",
        # the first failing group shows it: -x spares the second's shrinking and repro runs
        "--", "-k", "forward or backward", "-x",
    )  # fmt: skip
    assert left_out.returncode == 1, left_out.stdout[-3000:] + left_out.stderr[-3000:]
    assert "FAILED max_pool1d torch float64" in left_out.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("run", "--ops", "Conv2d"), "did you mean 'conv2d'?"),
        (("run", "--baseline", "missing.csv"), "--baseline: no such file: missing.csv"),
        (("run", "--profile", "quik"), "did you mean 'quick'?"),
    ],
)
def test_usage_errors_are_one_line(
    installed: tuple[Path, Path], arguments: tuple[str, ...], message: str
) -> None:
    done = _conformance(installed, *arguments)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
