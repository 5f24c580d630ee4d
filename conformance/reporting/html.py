"""report.html: the summary's tables plus two plots, one self-contained file (plots inlined
as PNG data), readable offline in any browser."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from conformance.catalogue.spec import OpSpec
from conformance.reporting.baseline import KnownDiscrepancy, known_table
from conformance.reporting.figures import png_base64, pyplot
from conformance.reporting.results import FAILING, GROUP
from conformance.reporting.scoreboard import scoreboard_matrix, scoreboard_table, status_matrix
from conformance.reporting.tables import (
    coverage_table,
    discrepancies,
    error_table,
    results_table,
    throughput_table,
    widened_table,
)
from conformance.reporting.verdict import verdict, verdict_lines

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1300px; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
.partial { background: #fdd; padding: 0.5em; font-weight: bold; }
td.pass { background: #d9f2d9; }
td.known { background: #fff1c2; }
td.FAIL { background: #f7c6c6; font-weight: bold; }
td.unsupported { background: #e4e4e4; color: #555; }
td.partly-unsupported { background: #e8f0e4; color: #333; }
tr.pass td { background: #eef9ee; }
tr.known td { background: #fff6d6; }
tr.FAIL td { background: #f7c6c6; font-weight: bold; }
tr.unsupported td { background: #eee; color: #555; }
img { max-width: 100%; height: auto; }
table.coverage td { text-align: left; }
.chip { display: inline-block; margin: 0.1em; padding: 0.05em 0.4em; background: #e8eef8;
        border-radius: 0.6em; white-space: nowrap; }
.chip.never { background: #f7c6c6; font-weight: bold; }
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
        "explains; red: a failure; grey: the implementation cannot express the examples "
        "(pale green: some of them, and it passed all the others).</p>"
    )
    return legend + "".join(rows)


def _png(figure: Any) -> str:
    data = png_base64(figure, dpi=90, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def error_plot(frame: pd.DataFrame) -> str:
    """Each example's error / bound, per op (rows), log scale, with the bound (1) drawn.

    Passing examples are coloured by dtype; those the baseline excuses (known) are grey
    crosses; failures are red, those with an infinite ratio (a wrong NaN, a wrong shape, an
    exception) drawn at the right edge as red triangles. Exact ops' zero ratios sit at the
    left edge."""
    verdicts = frame["verdict"].astype(str)
    ratios = frame["bound_ratio"].astype(float)
    plotted = verdicts.isin(["pass", "widened", "known", *FAILING]) & ~ratios.isna()
    shown = frame.loc[plotted, ["op", "dtype", "verdict", "bound_ratio"]]
    if shown.empty:
        return "<p>No measured examples to plot.</p>"
    ops = sorted(shown["op"].unique())
    row_of = {op: i for i, op in enumerate(ops)}
    ratio = shown["bound_ratio"].astype(float).to_numpy()
    finite_positive = ratio[np.isfinite(ratio) & (ratio > 0)]
    floor = float(finite_positive.min()) / 3 if finite_positive.size else 1e-6
    ceiling = max(float(finite_positive.max()) * 3 if finite_positive.size else 10.0, 10.0)
    figure, axes = pyplot().subplots(figsize=(10, 0.3 * len(ops) + 1.5))
    rng = np.random.default_rng(0)  # vertical jitter only, so dots do not hide each other
    dtypes = sorted(shown["dtype"].unique())

    def place(rows: pd.DataFrame, offset: float) -> tuple[np.ndarray, np.ndarray]:
        y = rows["op"].map(row_of).to_numpy(float) + offset + rng.uniform(-0.06, 0.06, len(rows))
        x = rows["bound_ratio"].astype(float).to_numpy()
        x = np.where(np.isinf(x), ceiling, np.clip(x, floor, ceiling))
        return x, y

    verdict = shown["verdict"].astype(str)
    for index, dtype in enumerate(dtypes):
        rows = shown[verdict.isin(["pass", "widened"]) & (shown["dtype"] == dtype)]
        if len(rows):
            x, y = place(rows, (index - (len(dtypes) - 1) / 2) * 0.15)
            axes.scatter(x, y, s=5, alpha=0.45, label=f"{dtype} (passed)")
    known = shown[verdict == "known"]
    if len(known):
        x, y = place(known, 0.0)
        axes.scatter(x, y, s=14, marker="x", color="0.55", label="known (baseline)")
    failed = shown[verdict.isin(FAILING)]
    if len(failed):
        x, y = place(failed, 0.0)
        infinite = x >= ceiling
        axes.scatter(x[~infinite], y[~infinite], s=22, color="red", label="FAILED")
        axes.scatter(x[infinite], y[infinite], s=30, marker=">", color="red", label="FAILED (inf)")
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1, label="bound (ratio 1)")
    axes.set_xscale("log")
    axes.set_xlim(floor / 1.5, ceiling * 1.5)
    axes.set_yticks(range(len(ops)), ops)
    axes.invert_yaxis()
    axes.set_xlabel("error / bound per example (worst element); > 1 fails")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=2, fontsize="small")
    return _png(figure)


def coverage_html(frame: pd.DataFrame, catalogue: Iterable[OpSpec]) -> str:
    """Per op, its regions and their example counts, wrapping within the page; a region
    never hit in red."""
    table = coverage_table(frame, catalogue)
    if table.empty:
        return "<p>None.</p>"
    rows = ["<table class='coverage'><tr><th>op</th><th>regions (examples)</th></tr>"]
    for op in table.columns:
        chips = []
        for region in table.index:
            count = table.at[region, op]
            if count == "":
                continue
            never = " never" if count == 0 else ""
            chips.append(f"<span class='chip{never}'>{html.escape(str(region))}: {count}</span>")
        rows.append(f"<tr><th>{html.escape(str(op))}</th><td>{' '.join(chips)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def status_table(table: pd.DataFrame) -> str:
    """A results table whose rows are coloured by their worst verdict."""
    if table.empty:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = [f"<table><tr>{head}</tr>"]
    for record in table.to_dict("records"):
        status = (
            "FAIL"
            if record.get("failed", 0)
            else "known"
            if record.get("known", 0)
            else "unsupported"
            if record.get("unsupported", 0) == record.get("examples", -1)
            else "pass"
        )
        cells = "".join(
            f"<td>{v:.3g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in record.values()
        )
        rows.append(f"<tr class='{status}'>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


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
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Conformance report: {html.escape(verdict(frame, header))}</h1>",
    ]
    paragraphs: list[list[str]] = [[]]
    for line in verdict_lines(frame, header):  # wrapped for markdown: rejoin each paragraph
        if not line.strip() or line.startswith("- "):
            paragraphs.append([])
        if line.strip():
            paragraphs[-1].append(line.strip().removeprefix("- "))
    parts += [
        f"<p class='verdict'>{html.escape(' '.join(words)).replace('**', '')}</p>"
        for words in paragraphs
        if words
    ]
    if header.get("partial", "no") != "no":
        parts.append(
            f"<p class='partial'>PARTIAL REPORT: {html.escape(str(header['partial']))}</p>"
        )
    parts.append("<ul>")
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
        for k, v in header.items()
        if k not in ("shortfalls", "not run")
    ]
    parts.append("</ul>")
    if frame.empty:
        return "".join([*parts, "<p>No examples were recorded.</p></body></html>"])
    parts += ["<h2>Scoreboard</h2>", scoreboard_html(frame)]
    parts += ["<h2>Results</h2>", status_table(results_table(frame))]
    parts += ["<h2>Error against the bound, per example</h2>", error_plot(frame)]
    parts += ["<h2>Coverage</h2>", coverage_html(frame, catalogue)]
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
