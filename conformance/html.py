"""report.html: the summary's tables plus two plots, one self-contained file (plots inlined
as PNG data), readable offline in any browser."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from conformance.baseline import KnownDiscrepancy, known_table
from conformance.results import GROUP
from conformance.scoreboard import scoreboard_matrix, scoreboard_table, status_matrix
from conformance.spec import OpSpec
from conformance.tables import (
    coverage_table,
    discrepancies,
    error_table,
    results_table,
    throughput_table,
    widened_table,
)

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
.partial { background: #fdd; padding: 0.5em; font-weight: bold; }
td.pass { background: #d9f2d9; }
td.known { background: #fff1c2; }
td.FAIL { background: #f7c6c6; font-weight: bold; }
td.unsupported, td.partly-unsupported { background: #e4e4e4; color: #555; }
"""


def scoreboard_html(frame: pd.DataFrame) -> str:
    """The op x implementation grid, each cell coloured by its status."""
    board = scoreboard_table(frame)
    if board.empty:
        return "<p>None.</p>"
    cells, statuses = scoreboard_matrix(board), status_matrix(board)
    rows = ["<table><tr><th>op</th>"]
    rows += [f"<th>{html.escape(str(name))}</th>" for name in cells.columns]
    rows.append("</tr>")
    for op in cells.index:
        rows.append(f"<tr><th>{html.escape(str(op))}</th>")
        for name in cells.columns:
            status = str(statuses.at[op, name]).replace(" ", "-")
            text = html.escape(str(cells.at[op, name])) or "not run"
            rows.append(f"<td class='{status}' title='{status}'>{text}</td>")
        rows.append("</tr>")
    rows.append("</table>")
    legend = (
        "<p>Green: every example within its bound; yellow: disagreements the baseline "
        "explains; red: a failure; grey: the implementation cannot express the examples.</p>"
    )
    return legend + "".join(rows)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def error_plot(frame: pd.DataFrame) -> str:
    """Normalized error per op (rows) and dtype (colours): one dot per example, log scale;
    zero errors are drawn at the left edge."""
    measured = frame[np.isfinite(frame["normalized_error"].astype(float))]
    if measured.empty:
        return "<p>No finite errors to plot.</p>"
    ops = sorted(measured["op"].unique())
    dtypes = sorted(measured["dtype"].unique())
    positive = measured["normalized_error"][measured["normalized_error"] > 0]
    floor = float(positive.min()) / 2 if not positive.empty else 1e-3
    figure, axes = plt.subplots(figsize=(9, 0.32 * len(ops) + 1.2))
    rng = np.random.default_rng(0)  # vertical jitter only, so dots do not hide each other
    for offset, dtype in enumerate(dtypes):
        rows = measured[measured["dtype"] == dtype]
        y = rows["op"].map({op: i for i, op in enumerate(ops)}).to_numpy(float)
        y += (offset - (len(dtypes) - 1) / 2) * 0.18 + rng.uniform(-0.05, 0.05, len(rows))
        x = np.maximum(rows["normalized_error"].to_numpy(float), floor)
        axes.scatter(x, y, s=4, alpha=0.4, label=dtype)
    axes.set_xscale("log")
    axes.set_yticks(range(len(ops)), ops)
    axes.invert_yaxis()
    axes.set_xlabel("normalized error (units of u * sum|a*b|)")
    axes.legend(loc="lower right", markerscale=3, fontsize="small")
    return _png(figure)


def coverage_plot(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> str:
    """Heat map of the coverage table: examples per region (rows) and op (columns)."""
    table = coverage_table(frame, catalogue)
    if table.empty:
        return "<p>No coverage to plot.</p>"
    counts = table.replace("", np.nan).astype(float)
    figure, axes = plt.subplots(
        figsize=(0.35 * len(counts.columns) + 3, 0.25 * len(counts.index) + 2)
    )
    shown = np.log10(counts.to_numpy() + 1)
    image = axes.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap="viridis")
    never = np.argwhere(counts.to_numpy() == 0)
    axes.scatter(never[:, 1], never[:, 0], marker="x", color="red", s=20, label="never hit")
    axes.set_xticks(range(len(counts.columns)), counts.columns, rotation=90, fontsize=7)
    axes.set_yticks(range(len(counts.index)), counts.index, fontsize=7)
    figure.colorbar(image, label="log10(examples + 1)")
    return _png(figure)


def _table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>None.</p>"
    return str(table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0))


def render_html(
    frame: pd.DataFrame,
    header: Mapping[str, Any],
    catalogue: Iterable[OpSpec],
    baseline: list[KnownDiscrepancy] | None = None,
) -> str:
    catalogue = list(catalogue)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Conformance report</title>",
        f"<style>{STYLE}</style></head><body><h1>Conformance report</h1>",
    ]
    if header.get("partial", "no") != "no":
        parts.append(
            f"<p class='partial'>PARTIAL REPORT: {html.escape(str(header['partial']))}</p>"
        )
    parts.append("<ul>")
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in header.items()
    ]
    parts.append("</ul>")
    if frame.empty:
        return "".join([*parts, "<p>No examples were recorded.</p></body></html>"])
    parts += ["<h2>Scoreboard</h2>", scoreboard_html(frame)]
    parts += ["<h2>Results</h2>", _table(results_table(frame))]
    parts += ["<h2>Normalized error per op and dtype</h2>", error_plot(frame)]
    parts += ["<h2>Coverage</h2>", coverage_plot(frame, catalogue)]
    coverage = coverage_table(frame, catalogue)
    parts.append(str(coverage.to_html(border=0)))
    parts += ["<h2>Accumulation precision (widened bounds)</h2>", _table(widened_table(frame))]
    parts += ["<h2>Error conformance (invalid calls)</h2>", _table(error_table(frame))]
    parts += ["<h2>Throughput</h2>", _table(throughput_table(frame))]
    known = known_table(frame, baseline or [])
    parts += ["<h2>Known discrepancies</h2>", _table(known)]
    parts.append("<h2>Discrepancies</h2>")
    found = discrepancies(frame)
    if not found:
        parts.append("<p>None.</p>")
    for entry in found:
        row = entry["row"]
        title = html.escape(" ".join(str(entry[k]) for k in GROUP))
        parts.append(f"<h3>{title}</h3><p>{entry['count']} failing examples. ")
        parts.append(f"Problem: {html.escape(str(row.get('problem')))}</p>")
        if isinstance(row.get("repro"), str):
            parts.append(f"<pre>{html.escape(row['repro'])}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
