"""python -m conformance bench --model: its table and targets on a tiny network. No timing
is asserted: a benchmark measures, a test checks. The command's own run in a fresh process
(command_figures: a subprocess and its header.json) is replaced by a stand-in here, whose
figures must reach the report; the manual runs in the README exercise the real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conformance.bench import model as bench
from conformance.cli import main


def test_model_bench_times_every_conv_call_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def command_figures(spec: str, shape: str) -> dict[str, Any]:
        asked.append((spec, shape))
        return {"exit status": 0, "wall (s)": 200.5, "peak memory (MiB)": 123.4}

    monkeypatch.setattr(bench, "command_figures", command_figures)
    spec = "tests.model.tiny:standard_and_depthwise"
    arguments = ["bench", "--model", spec, "--input-shape", "1,32,8,8", "--repeats", "1"]
    assert main([*arguments, "--out", str(tmp_path)]) == 0
    assert asked == [(spec, "1,32,8,8")]
    table = pd.read_csv(tmp_path / "bench-model.csv")
    assert table["layer"].astype(str).tolist() == ["0", "0", "1", "1"]  # two convs, both ways
    assert table["direction"].tolist() == ["forward", "backward"] * 2
    assert (table["oracle with bound (ms)"] > 0).all() and (table["torch float64 (ms)"] > 0).all()
    ratio = table["oracle with bound (ms)"] / table["torch float64 (ms)"]
    assert (abs(table["ratio"] - ratio) <= 1e-9 * ratio).all()
    text = (tmp_path / "bench-model.md").read_text()
    assert "- **command: peak memory (MiB)**: 123.4" in text
    # 200.5 s is over the 180 s target: the targets table says so
    (line,) = [row for row in text.splitlines() if row.startswith("| model command wall time")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1:] == ["180", "200", "False"]
