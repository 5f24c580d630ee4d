"""report.html in a real browser: headless Chromium renders a failing run's report, and the
rendered page shows the verdict, coloured statuses, the bound on the plot and a coverage view
that fits a 1400 px window. Skipped where Chromium is not installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the page's own width, measured in the browser, written into the DOM we dump
MEASURE = """
<script>
window.addEventListener('load', () => {
  const out = document.createElement('div');
  out.id = 'measured';
  out.textContent = 'MEASURED' + 'WIDTH=' + document.documentElement.scrollWidth + '=END';
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_failing_report_renders_with_status_colours_and_fits_the_window(tmp_path: Path) -> None:
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance",
            "run",
            "--impl",
            "tests.harness.wrong_padding,torch",
            "--ops",
            "conv2d,max_pool2d",
            "--dtypes",
            "float64",
            "--profile",
            "quick",
            "--seed",
            "3",  # quick depth: a seed whose 20 conv2d examples meet the planted bug
            "--database",
            "none",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    page = (out / "report.html").read_text(encoding="utf-8")
    measured = out / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1400,2000"]
    dom = subprocess.run(
        [*common, "--dump-dom", "--virtual-time-budget=5000", measured.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "Conformance report: FAIL" in dom
    assert 'class="FAIL"' in dom  # the failing group's row and scoreboard cell are red
    assert 'class="pass"' in dom  # torch's passing groups are green
    assert 'class="chip' in dom  # coverage as wrapping chips, not a 1,000-px table
    width = int(dom.split("MEASUREDWIDTH=", 1)[1].split("=END", 1)[0])
    assert width <= 1400, f"the page is {width} px wide: it scrolls sideways in 1400 px"
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--screenshot={screenshot}", (out / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert screenshot.stat().st_size > 10_000  # a rendered page, not an empty canvas
