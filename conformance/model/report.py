"""The model command's report: layers.csv (one row per layer), checks.csv (one row per
catalogue call and direction), header.json, model.md and model.html, each written whole or
not at all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conformance.judge.flop_counter import COUNTER
from conformance.model.run import ModelRun

COMPACT = {
    "layer": "layer",
    "kind": "kind",
    "output_shape": "output (N, C, spatial)",
    "parameters": "parameters",
    "macs": "MACs",
    "receptive_field": "R",
    "jump": "J",
    "probe": "probe",
    "dead_channels": "dead",
    "worst_bound_ratio": "worst bound ratio",
    "verdict": "verdict",
}


def status(result: ModelRun) -> str:
    return "FAIL" if result.first_failure or result.disagreements else "PASS"


def verdict_lines(result: ModelRun, out: Path) -> list[str]:
    """What the command prints: the verdict, the first failing layer and why, the repro."""
    table = result.table
    counted = table["verdict"].value_counts()
    verdicts = ("pass", "fail", "known", "unsupported", "not checked")
    tally = ", ".join(f"{counted.get(v, 0)} {v}" for v in verdicts if counted.get(v, 0))
    lines = [
        f"model: {status(result)}: {len(table)} layers ({tally}); "
        f"{result.header.get('wall (s)', '?')} s, peak memory "
        f"{result.header.get('peak memory (MiB)', '?')} MiB; report in {out}/model.md"
    ]
    if result.first_failure:
        lines.append(f"first failing layer: {result.first_failure}")
    if result.repro is not None:
        lines.append(f"repro of that layer alone: python {result.repro}")
    lines += [f"arithmetic disagreement: {d}" for d in result.disagreements[:10]]
    if len(result.disagreements) > 10:
        lines.append(f"... and {len(result.disagreements) - 10} more (model.md)")
    return lines


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "None."
    return str(frame.to_markdown(index=False, floatfmt=".3g"))


def _ratio(value: Any) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3g}"
    )


def compact_layers(table: pd.DataFrame) -> pd.DataFrame:
    frame = table[list(COMPACT)].copy()
    frame["probe"] = frame["probe"].map(lambda text: str(text).split(" (", 1)[0][:40])
    frame["worst_bound_ratio"] = frame["worst_bound_ratio"].map(_ratio)
    for column in ("dead_channels", "macs"):
        frame[column] = frame[column].map(_count)
    return frame.rename(columns=COMPACT)


def totals(result: ModelRun) -> pd.DataFrame:
    table = result.table
    comparable = table["flops_forward_torch"].notna()
    rows = [
        ("parameters, each counted where first used", int(table["parameters"].sum())),
        ("parameters of the model (numel)", result.header.get("parameters", "")),
        ("multiply-adds, forward (layers the reference describes)", int(table["macs"].sum())),
        ("FLOPs forward (2 MACs)", int(table["flops_forward"].sum())),
        ("FLOPs backward (grad_input + grad_weight)", int(table["flops_backward"].sum())),
        ("FlopCounterMode forward, layers it counted alone",
         int(table.loc[comparable, "flops_forward_torch"].sum())),
        ("FlopCounterMode backward, layers it counted alone",
         int(table.loc[comparable, "flops_backward_torch"].sum())),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["total", "value"])


def flops_table(table: pd.DataFrame) -> pd.DataFrame:
    different = table[~table["flops_note"].isin(["equal", "-"])]
    frame = different[["layer", "kind", "flops_forward", "flops_backward", "flops_forward_torch",
                       "flops_backward_torch", "flops_note"]].copy()  # fmt: skip
    frame["flops_note"] = frame["flops_note"].map(lambda text: str(text)[:120])
    return frame


def fields_table(table: pd.DataFrame) -> pd.DataFrame:
    """The layers where the field grows or the probe has something to say."""
    changed = table["receptive_field"].ne(table["receptive_field"].shift()) | table["jump"].ne(
        table["jump"].shift()
    )
    notable = changed | ~table["probe"].str.startswith("match")
    columns = ["layer", "kind", "receptive_field", "jump", "field_start", "field_in_input",
               "probe", "field_note"]  # fmt: skip
    return table.loc[notable, columns]


def alternatives_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["separable_parameters"].notna()]
    frame = pd.DataFrame(
        {
            "layer": rows["layer"],
            "standard parameters": rows["parameters"],
            "standard MACs": rows["macs"],
            "separable parameters": rows["separable_parameters"].astype("int64"),
            "separable MACs": rows["separable_macs"].astype("int64"),
            "separable / standard MACs": rows["separable_macs"] / rows["macs"],
            "1x1 parameters": rows["pointwise_parameters"].astype("int64"),
            "1x1 MACs": rows["pointwise_macs"].astype("int64"),
        }
    )
    return frame


def _count(value: Any) -> str:
    missing = value is None or (isinstance(value, float) and np.isnan(value))
    return "-" if missing else str(int(value))


def statistics_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["mean_min"].notna()]
    frame = rows[["layer", "kind", "mean_min", "mean_max", "std_min", "std_max", "dead_channels"]]
    return frame.assign(dead_channels=frame["dead_channels"].map(_count))


def not_checked_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["verdict"] == "not checked"]
    if rows.empty:
        return pd.DataFrame()
    grouped = rows.groupby(["kind", "problem"], sort=False).agg(
        layers=("layer", "count"), parameters=("parameters", "sum"), MACs=("macs", "sum"),
        first=("layer", "first"),
    )  # fmt: skip
    return grouped.reset_index()


def checks_summary(check_rows: pd.DataFrame) -> pd.DataFrame:
    if check_rows.empty:
        return pd.DataFrame()
    grouped = check_rows.groupby(["op", "direction", "dtype"], sort=False)
    frame = grouped["verdict"].value_counts().unstack(fill_value=0).reset_index()
    worst = grouped["bound_ratio"].max().reset_index(drop=True)
    frame["worst bound ratio"] = worst.map(_ratio)
    return frame


def render(result: ModelRun) -> str:
    header, table = result.header, result.table
    lines = [f"# Model report: {status(result)} - {header.get('model', '')}", ""]
    if result.first_failure:
        lines.append(f"**First failing layer**: `{result.first_failure}`")
        if result.repro is not None:
            lines.append(f"  - repro of that layer alone: `{result.repro}`")
        lines.append("")
    if result.disagreements:
        lines += ["**Arithmetic disagreements** (shapes, counts, receptive fields):", ""]
        lines += [f"- {d}" for d in result.disagreements]
        lines.append("")
    counted = table["verdict"].value_counts()
    lines += [
        f"{len(table)} layers; through {header.get('implementation')} against the float64 "
        f"oracle: {counted.get('pass', 0)} pass, {counted.get('fail', 0)} fail, "
        f"{counted.get('known', 0)} known, {counted.get('not checked', 0)} not checked. "
        "Shapes are N, C, then the spatial sizes.",
        "",
        "## Run",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    sections: Sequence[tuple[str, str, pd.DataFrame]] = (
        ("Layers", "", compact_layers(table)),
        ("Totals", "", totals(result)),
        ("FLOPs beside FlopCounterMode",
         "Where torch's FlopCounterMode counts differently; each difference is predicted "
         f"exactly by its stated rules ('explained') or listed as UNEXPLAINED. {COUNTER}",
         flops_table(table)),
        ("Receptive fields",
         "R, J, S: the closed form (Araujo et al. 2019), unclipped, residual paths united; "
         "'field in input' the widest field any position has inside this input. 'probe': the "
         "network with weights 1, biases 0 and batch norm as the identity, fed impulses "
         f"({header.get('impulses', '')}): every layer's responding positions against its "
         "exact field. Layers whose field does not change are left out here (layers.csv has "
         "them all).",
         fields_table(table)),
        ("Activation statistics",
         "Per channel over the batch and the positions: the range of the means and of the "
         "standard deviations; dead: channels never above 0 after a ReLU-like activation.",
         statistics_table(table)),
        ("Standard, 1x1 and depthwise-separable convolutions",
         "Each standard k x k convolution beside its depthwise-separable version (a depthwise "
         "k x k with the same stride, padding and dilation, then a 1x1) and a 1x1 convolution "
         "on the same output grid (FLOPs: 2 MACs; layers.csv has them too).",
         alternatives_table(table)),
        ("Not checked", "Layers the catalogue has no op for, with their counts.",
         not_checked_table(table)),
        ("Checks", "Per catalogue op, direction and dtype: the verdicts of the layers' calls.",
         checks_summary(result.check_rows)),
    )  # fmt: skip
    for title, text, frame in sections:
        lines += ["", f"## {title}", ""]
        if text:
            lines += [text, ""]
        lines.append(_markdown(frame))
    return "\n".join(lines) + "\n"
