"""The README's code examples run as written (those that are complete programs: the
implementation template, whose bodies are '...', is exercised by the harness tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
PROGRAMS = [block for block in BLOCKS if "): ..." not in block]


def test_the_readme_has_runnable_examples() -> None:
    assert PROGRAMS, "the README lost its runnable example"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.splitlines()[1][:40])
def test_readme_example_runs(program: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "torch" not in done.stdout  # the oracle example needs no torch
