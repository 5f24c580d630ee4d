"""model.html: the model report for a browser, one self-contained file: the verdict, three
plots per layer (bound ratio, activation statistics, receptive field) and the tables, the
layers coloured by verdict."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from conformance.model import report
from conformance.model.run import ModelRun
from conformance.reporting.figures import png_base64, pyplot

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1300px; }
table { border-collapse: collapse; font-size: 0.8em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.15em 0.45em; text-align: right; }
td:first-child, td:nth-child(2) { text-align: left; }
th { background: #eee; position: sticky; top: 0; }
.verdict { font-size: 1.3em; padding: 0.5em; }
.PASS { background: #d9f2d9; } .FAIL { background: #f7c6c6; }
tr.pass td { background: #eef9ee; } tr.fail td { background: #f7c6c6; font-weight: bold; }
tr.known td { background: #fff6d6; } tr.unsupported td { background: #eee; color: #555; }
tr.not-checked td { color: #666; }
img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""

COLOURS = {"pass": "#2e8b57", "fail": "#c0392b", "known": "#d4a017", "unsupported": "#888888"}


def _png(figure: Any) -> str:
    return f"<img alt='plot' src='data:image/png;base64,{png_base64(figure, dpi=100)}'>"


def plots(table: pd.DataFrame) -> str:
    """Per layer (x: position in the forward pass): the worst bound ratio of each checked
    layer (log scale; above 1 fails), the activation statistics, and the receptive field."""
    figure, axes = pyplot().subplots(3, 1, figsize=(12, 9.5), sharex=True)
    figure.subplots_adjust(left=0.07, right=0.93, top=0.96, bottom=0.06, hspace=0.22)
    index = np.arange(len(table))
    ratio = pd.to_numeric(table["worst_bound_ratio"], errors="coerce").to_numpy(dtype=float)
    shown = np.isfinite(ratio) & (ratio > 0)
    for verdict, colour in COLOURS.items():
        chosen = shown & (table["verdict"] == verdict).to_numpy()
        if chosen.any():
            axes[0].scatter(index[chosen], ratio[chosen], s=14, color=colour, label=verdict)
    zero = np.isfinite(ratio) & (ratio == 0)
    if zero.any():  # bit-exact outputs: drawn at the bottom
        axes[0].scatter(index[zero], np.full(int(zero.sum()), 1e-6), s=14, marker="v",
                        color="#2e8b57", label="exact (ratio 0)")  # fmt: skip
    axes[0].axhline(1.0, color="#c0392b", linewidth=1, linestyle="--", label="the bound")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("worst |error| / bound")
    axes[0].legend(loc="lower right", fontsize=8, ncol=5)
    axes[0].set_title("Each checked layer through the implementation, against its bound")
    stats = table["mean_min"].notna().to_numpy()
    for low, high, colour, label in (
        ("mean_min", "mean_max", "#1f77b4", "channel means (min to max)"),
        ("std_min", "std_max", "#ff7f0e", "channel standard deviations (min to max)"),
    ):
        lows = table[low].to_numpy(dtype=float)
        highs = table[high].to_numpy(dtype=float)
        axes[1].fill_between(index, lows, highs, where=stats, color=colour, alpha=0.35,
                             step="mid", label=label)  # fmt: skip
    dead = pd.to_numeric(table["dead_channels"], errors="coerce").to_numpy(dtype=float)
    if np.isfinite(dead).any() and np.nanmax(dead) > 0:
        twin = axes[1].twinx()
        twin.bar(index, np.nan_to_num(dead), color="#c0392b", alpha=0.6, label="dead channels")
        twin.set_ylabel("dead channels")
    axes[1].set_ylabel("activation")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[1].set_title("Activation statistics of each layer's output (one batch)")
    size = pd.to_numeric(table["receptive_field"], errors="coerce").to_numpy(dtype=float)
    span = pd.to_numeric(
        table["field_in_input"].map(lambda text: str(text).split("x")[0]), errors="coerce"
    ).to_numpy(dtype=float)
    axes[2].step(index, size, where="mid", label="R, closed form (unclipped)")
    axes[2].step(index, span, where="mid", label="widest field inside the input", linestyle="--")
    mismatch = table["probe"].str.startswith("MISMATCH").to_numpy()
    if mismatch.any():
        axes[2].scatter(index[mismatch], size[mismatch], color="#c0392b", label="probe mismatch")
    axes[2].set_ylabel("receptive field (first axis)")
    axes[2].set_xlabel("layer, in forward order")
    axes[2].legend(loc="upper left", fontsize=8)
    axes[2].set_title("Receptive field after each layer")
    return _png(figure)


def _table(frame: pd.DataFrame, verdicts: pd.Series | None = None) -> str:
    if frame.empty:
        return "<p>None.</p>"
    rows = ["<table><tr>"]
    rows += [f"<th>{html.escape(str(c))}</th>" for c in frame.columns]
    rows.append("</tr>")
    for position, (_, record) in enumerate(frame.iterrows()):
        css = "" if verdicts is None else str(verdicts.iloc[position]).replace(" ", "-")
        rows.append(f"<tr class='{css}'>")
        for value in record:
            text = f"{value:.3g}" if isinstance(value, float) else str(value)
            rows.append(f"<td>{html.escape(text)}</td>")
        rows.append("</tr>")
    rows.append("</table>")
    return "".join(rows)


def render(result: ModelRun) -> str:
    header, table = result.header, result.table
    state = report.status(result)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Model report: {state}</title><style>{STYLE}</style></head><body>",
        f"<h1>Model report: {state}</h1>",
        f"<p class='verdict {state}'>{html.escape(str(header.get('model', '')))} at "
        f"{html.escape(str(header.get('input shape (N, C, spatial)', '')))}, through "
        f"{html.escape(str(header.get('implementation', '')))}: ",
    ]
    if result.first_failure:
        parts.append(f"first failing layer <code>{html.escape(result.first_failure[:400])}</code>")
        if result.repro is not None:
            parts.append(f"; repro: <code>{html.escape(str(result.repro))}</code>")
    else:
        parts.append("every checked layer within its bound")
    parts.append("</p>")
    if result.disagreements:
        parts.append("<h2>Arithmetic disagreements</h2><ul>")
        parts += [f"<li>{html.escape(d)}</li>" for d in result.disagreements]
        parts.append("</ul>")
    parts.append(plots(table))
    parts.append("<h2>Run</h2><ul>")
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in header.items()
    ]
    parts.append("</ul>")
    parts += ["<h2>Layers</h2>", _table(report.compact_layers(table), table["verdict"])]
    for title, frame in (
        ("Totals", report.totals(result)),
        ("FLOPs beside FlopCounterMode", report.flops_table(table)),
        ("Receptive fields", report.fields_table(table)),
        ("Standard, 1x1 and depthwise-separable convolutions", report.alternatives_table(table)),
        ("Not checked", report.not_checked_table(table)),
        ("Checks", report.checks_summary(result.check_rows)),
    ):
        parts += [f"<h2>{html.escape(title)}</h2>", _table(frame)]
    parts.append("</body></html>")
    return "".join(parts)
