"""The checklist on one network: the capture pass, the probe pass, the counts (with
FlopCounterMode on each layer alone) and the conformance checks, gathered into one table with
a row per layer."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from conformance.catalogue import BY_NAME
from conformance.model import checks, counts, fields, probe, replay
from conformance.model.trace import Layer, ModelError, Tracer, TracerBug
from conformance.reporting.baseline import KnownDiscrepancy
from conformance.reporting.results import FAILING

LOSS = (
    "cross-entropy of the output (classes along axis 1) against labels drawn from the seed; "
    "the input a standard-normal batch drawn from the seed"
)


@dataclass
class ModelRun:
    """Everything the report shows."""

    layers: list[Layer]
    table: pd.DataFrame  # one row per layer
    check_rows: pd.DataFrame  # one row per catalogue call and direction
    header: dict[str, Any]
    first_failure: str | None = None  # "path: why"
    repro: Path | None = None
    disagreements: list[str] = field(default_factory=list)  # arithmetic: shapes, counts, fields


def real_loss(seed: int) -> Callable[[Any], torch.Tensor]:
    """Cross-entropy against seeded labels: one class per sample (and position)."""

    def loss(output: Any) -> torch.Tensor:
        out = output if isinstance(output, torch.Tensor) else output[0]
        if out.ndim < 2:
            return (out.float() ** 2).mean()
        generator = torch.Generator().manual_seed(seed + 1)
        shape = (out.shape[0], *out.shape[2:])
        labels = torch.randint(0, out.shape[1], shape, generator=generator)
        return torch.nn.functional.cross_entropy(out, labels)

    return loss


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's floating parameters (float32 without any)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def model_input(model: torch.nn.Module, shape: Sequence[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=generator, dtype=model_dtype(model))
    return x.requires_grad_(True)


def capture(model: torch.nn.Module, shape: Sequence[int], seed: int) -> list[Layer]:
    """The capture pass: forward on the seeded batch, backward of the real loss."""
    x = model_input(model, shape, seed)
    torch.manual_seed(seed)  # dropout's masks
    with Tracer(model, len(shape) - 2, capture=True, probe=False) as tracer:
        output = model(tracer.start(x))
    real_loss(seed)(output).backward()
    model.zero_grad(set_to_none=True)
    return tracer.layers


def _rejected(shape: Sequence[int], error: BaseException) -> ValueError:
    cause = error.__cause__ if isinstance(error, ModelError) and error.__cause__ else error
    text = " ".join(str(cause).split())
    return ValueError(
        f"--input-shape: the model rejects {','.join(map(str, shape))}: "
        f"{type(cause).__name__}: {text[:300]}"
    )


def _shape(value: Sequence[int] | None) -> str:
    return "-" if value is None else "x".join(str(v) for v in value)


def _stats_columns(layer: Layer) -> dict[str, Any]:
    stats = layer.stats
    if stats is None:
        return {"mean_min": np.nan, "mean_max": np.nan, "std_min": np.nan, "std_max": np.nan,
                "dead_channels": None}  # fmt: skip
    return {
        "mean_min": stats.mean_min,
        "mean_max": stats.mean_max,
        "std_min": stats.std_min,
        "std_max": stats.std_max,
        "dead_channels": stats.dead,
    }


def _parameters_check(layer: Layer, described: int | None) -> str:
    """The reference's count of a module's calls against numel of the module's parameters:
    'ok', 'MISMATCH: ...', or '-' where no description covers the layer."""
    if described is None or not layer.calls or layer.module is None:
        return "-"
    numel = sum(int(p.numel()) for p in layer.module.parameters())
    return "ok" if described == numel else f"MISMATCH: reference {described}, numel {numel}"


def layer_table(
    layers: Sequence[Layer],
    probed: Sequence[Layer],
    points: Sequence[tuple[int, ...]],
    dtype: torch.dtype,
    rows: Sequence[dict[str, Any]],
) -> tuple[pd.DataFrame, list[str]]:
    """The per-layer table and the arithmetic disagreements found on the way."""
    layer_counts = [counts.layer_counts(layer, layer.parameters) for layer in layers]
    torch_counts = counts.torch_flops(layers, layer_counts, dtype)
    by_layer: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_layer.setdefault(int(row["layer_index"]), []).append(row)
    records, disagreements = [], []
    for index, layer in enumerate(layers):
        count, (torch_forward, torch_backward, flops_note) = (
            layer_counts[index],
            torch_counts[index],
        )
        probed_layer = probed[index] if index < len(probed) else None
        probe_note, _ = probe.verdict(layer, probed_layer, points)
        size, jump, start = fields.describe(layer.field)
        parameters_check = _parameters_check(layer, count.described_parameters)
        verdict, worst, problem = checks.layer_verdict(layer, by_layer.get(index, []))
        for what, note in (("shape", count.shape_check), ("parameters", parameters_check),
                           ("FLOPs", flops_note), ("receptive field", probe_note)):  # fmt: skip
            if note.startswith(("MISMATCH", "UNEXPLAINED")):
                disagreements.append(f"{layer.path}: {what}: {note}")
        separable, pointwise = count.separable, count.pointwise
        records.append(
            {
                "layer": layer.path,
                "kind": layer.kind,
                "input_shape": _shape(layer.input_shapes[0] if layer.input_shapes else None),
                "output_shape": _shape(layer.output_shape),
                "shape_check": count.shape_check,
                "parameters": count.parameters,
                "parameters_check": parameters_check,
                "macs": count.macs,
                "flops_forward": count.flops_forward,
                "flops_backward": count.flops_backward,
                "flops_forward_torch": torch_forward,
                "flops_backward_torch": torch_backward,
                "flops_note": flops_note,
                "receptive_field": size,
                "jump": jump,
                "field_start": start,
                "field_in_input": "-"
                if layer.field is None
                else _shape(layer.field.largest_span()),
                "field_note": layer.field_note or (layer.field.note if layer.field else ""),
                "probe": probe_note,
                **_stats_columns(layer),
                "separable_parameters": None if separable is None else separable[0],
                "separable_macs": None if separable is None else separable[1],
                "separable_flops_forward": None if separable is None else 2 * separable[1],
                "pointwise_parameters": None if pointwise is None else pointwise[0],
                "pointwise_macs": None if pointwise is None else pointwise[1],
                "pointwise_flops_forward": None if pointwise is None else 2 * pointwise[1],
                "checked": ", ".join(sorted({c.op for c in layer.checks})) or "-",
                "worst_bound_ratio": worst,
                "verdict": verdict,
                "problem": problem,
            }
        )
    return pd.DataFrame(records), disagreements


def peak_memory_bytes() -> int:
    """This process's peak resident memory (Linux reports kibibytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_model(
    model: torch.nn.Module,
    shape: Sequence[int],
    implementation: Any,
    baseline: list[KnownDiscrepancy],
    seed: int,
    out: Path,
    threads: int,
) -> ModelRun:
    """The whole checklist; ``threads``: torch's threads for the network's own passes (the
    implementation under test keeps the count it chose for its calls)."""
    timings: dict[str, float] = {}
    checked_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    began = time.perf_counter()
    try:
        layers = capture(model, shape, seed)
    except TracerBug:
        raise  # the tracer's own bug: its traceback
    except Exception as error:  # the model's own error, or torch's inside it
        raise _rejected(shape, error) from None
    timings["capture pass"] = time.perf_counter() - began
    began = time.perf_counter()
    probed, points = probe.run_probe(model, shape)
    timings["probe pass"] = time.perf_counter() - began
    torch.set_num_threads(checked_threads)
    began = time.perf_counter()
    rows = checks.check_layers(layers, implementation, baseline)
    timings["conformance checks"] = time.perf_counter() - began
    torch.set_num_threads(threads)
    began = time.perf_counter()
    dtype = model_dtype(model)
    table, disagreements = layer_table(layers, probed, points, dtype, rows)
    timings["counts, FlopCounterMode"] = time.perf_counter() - began
    check_rows = pd.DataFrame(rows)
    result = ModelRun(layers, table, check_rows, {}, disagreements=disagreements)
    failing = table.index[table["verdict"] == "fail"]
    if len(failing):
        first = table.loc[failing[0]]
        result.first_failure = f"{first['layer']}: {first['problem']}"
        result.repro = _first_repro(layers[int(failing[0])], rows, implementation, out)
    result.header = {
        "layers": len(layers),
        "layers checked": int(table["verdict"].isin(["pass", "fail", "known"]).sum()),
        "checks": len(rows),
        "impulses": ", ".join(str(p) for p in points),
        **{f"{name} (s)": round(seconds, 2) for name, seconds in timings.items()},
    }
    return result


def _first_repro(
    layer: Layer, rows: Sequence[dict[str, Any]], implementation: Any, out: Path
) -> Path | None:
    """The repro of the layer's first failing check."""
    for row in rows:
        if row["layer_index"] != layer.index or row["verdict"] not in FAILING:
            continue
        check = layer.checks[int(row["call"])]
        example = checks.example_of(check, seed=layer.index)
        return replay.write_repro(
            out / "repro", layer.path, BY_NAME[check.op], implementation,
            str(row["dtype"]), str(row["direction"]), example,
        )  # fmt: skip
    return None
