"""results.csv written beside the rest of the report by a helper process, from results.parquet:
the same bytes as the frame's own CSV, and written here when the helper cannot."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from conformance.reporting import csv_writer
from conformance.reporting.csv_writer import CsvWriter, csv_text
from conformance.reporting.results import parquet_ready


def mixed_frame() -> pd.DataFrame:
    """Columns as a campaign's are: a config column of ints and strings, None and NaN, bools
    with gaps, floats that are whole numbers, text with commas, quotes and newlines."""
    return pd.DataFrame(
        {
            "op": ["conv1d", "conv1d", "max_pool2d", "fold"],
            "padding": [1, "same", None, "(1, 2)"],
            "ceil_mode": [True, None, False, None],
            "bound_ratio": [0.0, 0.15520688164835483, math.nan, 3.0],
            "n_terms": [3, 4, 5, 6],
            "problem": ["", 'a "quoted", text', "two\nlines", None],
        }
    )


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    buffer = io.BytesIO()
    parquet_ready(frame).to_parquet(buffer, index=False)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("background", [True, False])
def test_the_csv_is_the_frames_own_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    monkeypatch.setattr(csv_writer, "BACKGROUND_ROWS", 1 if background else 10**9)
    frame = mixed_frame()
    parquet = write_parquet(frame, tmp_path / "results.parquet")
    writer = CsvWriter(frame, parquet, tmp_path / "results.csv")
    assert (writer.process is not None) == background
    writer.finish()
    assert (tmp_path / "results.csv").read_text(encoding="utf-8") == csv_text(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.parquet"]


def test_a_helper_that_fails_leaves_the_csv_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_writer, "BACKGROUND_ROWS", 1)
    frame = mixed_frame()
    writer = CsvWriter(frame, tmp_path / "no such file.parquet", tmp_path / "results.csv")
    assert writer.process is not None
    writer.finish()  # the helper found no parquet: written here
    assert writer.process.returncode != 0
    assert (tmp_path / "results.csv").read_text(encoding="utf-8") == csv_text(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
