"""python -m conformance model SPEC --input-shape N,C,H,W: the checklist on one network.

Exit status as ``run``'s: 0 when every layer the catalogue knows passed (or is explained by
the baseline) and every shape, count and receptive field agreed; 1 for a discrepancy; 2 for
a usage error (a SPEC that does not import, a factory that returns no Module, an input shape
the model rejects, an unknown implementation, an oracle over its memory budget), said in one
line. Nothing here imports torch until the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path("reports") / "model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="package.module:factory, a callable returning a torch.nn.Module with its "
        "default initialization (shipped: conformance.model.zoo:resnet18, resnet50, "
        "mobilenet_v2, vgg11; conformance.model.zoo_dense:dilated_segmentation, unet, "
        "c3d_small)",
    )
    parser.add_argument(
        "--input-shape",
        required=True,
        help="the batch's shape, N,C,L or N,C,H,W or N,C,D,H,W (e.g. 1,3,224,224)",
    )
    parser.add_argument(
        "--impl",
        default="torch",
        help="the implementation under test: a built-in name (see list) or "
        "package.module[:attribute] (default: torch)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        metavar="CSV",
        help="known discrepancies of your own, added to the suite's shipped baseline",
    )
    parser.add_argument(
        "--no-shipped-baseline",
        action="store_true",
        help="leave the shipped baseline out: only --baseline files apply",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of torch's generator while the factory initializes the model, and of the "
        "input batch, the labels and dropout: the same seed, the same report (default: 0)",
    )
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="GiB one im2col buffer of the oracle may take (default: the reference's, 4); a "
        "layer that needs more stops the run with an error naming it",
    )


def parse_input_shape(text: str) -> tuple[int, ...]:
    """N,C and one to three spatial sizes, all positive."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ValueError(
            f"--input-shape: expected positive integers like 1,3,224,224, got {text!r}"
        )
    shape = tuple(int(part) for part in parts)
    if not 3 <= len(shape) <= 5 or min(shape) < 1:
        raise ValueError(
            f"--input-shape: expected N,C and 1 to 3 positive spatial sizes, got {text!r}"
        )
    return shape


def load_model(spec: str) -> Any:
    """Import package.module, call its factory, check it built a torch.nn.Module."""
    import torch

    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"SPEC: expected package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raises on import
        raise ValueError(f"SPEC: cannot import {module_name!r}: {_one_line(error)}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"SPEC: {module_name} has no {attribute!r}")
    if isinstance(factory, torch.nn.Module):
        model = factory
    elif callable(factory):
        try:
            model = factory()
        except Exception as error:
            raise ValueError(f"SPEC: {spec}() raised {_one_line(error)}") from None
    else:
        raise ValueError(f"SPEC: {spec} is a {type(factory).__name__}, not a callable")
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"SPEC: {spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def main(options: argparse.Namespace) -> int:
    import reference
    from conformance.implementations import code_paths, load_implementation, versions
    from conformance.implementations.isolation import InProcess, Isolated
    from conformance.reporting.baseline import load_baselines
    from reference import _windows

    shape = parse_input_shape(options.input_shape)
    if options.memory_budget is not None and not options.memory_budget > 0:
        raise ValueError(f"--memory-budget: a positive number of GiB, got {options.memory_budget}")
    import torch

    # the network's own passes run on as many torch threads as the torch adapter's calls:
    # CONFORMANCE_TORCH_THREADS, else 1 (with several, a machine shared with other work
    # makes OpenMP's barriers wait for cores: 15x slower on two busy cores)
    threads = int(os.environ.get("CONFORMANCE_TORCH_THREADS", "1"))
    try:
        local = load_implementation(options.impl)
        environment = code_paths.environment(options.impl)
    except ValueError as error:
        raise ValueError(f"--impl: {error}") from None
    # the layers' calls run here, at their real size; a call the baseline says damages its
    # process's memory (and a code path, whose caps need a process of its own) runs isolated
    isolated = Isolated(options.impl, local, environment=environment)
    implementation = isolated if environment else InProcess(local, isolated)
    baseline = load_baselines(options.baseline or (), not options.no_shipped_baseline)
    began = time.perf_counter()
    torch.manual_seed(options.seed)  # the factory's initialization: the same seed, the same run
    model = load_model(options.spec)
    built = time.perf_counter() - began
    budget = _windows.IM2COL_BUDGET["bytes"]
    if options.memory_budget is not None:
        reference.set_im2col_budget(int(options.memory_budget * 2**30))
    from conformance.model import run

    try:
        result = run.run_model(
            model, shape, implementation, baseline, options.seed, options.out, threads
        )
    finally:
        reference.set_im2col_budget(budget)
        implementation.close()  # its helper processes and their log directory
    parameters = sum(p.numel() for p in model.parameters())
    result.header = {
        "model": options.spec,
        "input shape (N, C, spatial)": ",".join(map(str, shape)),
        "dtype": str(run.model_dtype(model)).removeprefix("torch."),
        "implementation": implementation.name,
        "parameters": parameters,
        "loss": run.LOSS,
        "seed": options.seed,
        "im2col budget (GiB)": round((options.memory_budget or budget / 2**30), 3),
        **result.header,
        "build (s)": round(built, 2),
        "wall (s)": round(time.perf_counter() - began, 2),
        "peak memory (MiB)": round(run.peak_memory_bytes() / 2**20, 1),
        "torch threads": threads,
        "versions": ", ".join(
            f"{k} {v}"
            for k, v in {
                "torch": torch.__version__,
                "numpy": np.__version__,
                **versions(implementation),
            }.items()
        ),
        "platform": platform.platform(),
        "cpu count": os.cpu_count(),
    }
    write_files(result, options.out)
    from conformance.model import report

    for line in report.verdict_lines(result, options.out):
        print(line)
    failed = result.first_failure is not None or bool(result.disagreements)
    return 1 if failed else 0


def write_files(result: Any, out: Path) -> None:
    """The model report's files, each written whole: layers.csv, checks.csv, header.json,
    model.md and model.html."""
    from conformance.model import html, report
    from conformance.reporting.report import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "layers.csv", result.table.to_csv(index=False))
    atomic_write(out / "checks.csv", result.check_rows.to_csv(index=False))
    atomic_write(out / "header.json", json.dumps(result.header, indent=2, default=str))
    atomic_write(out / "model.md", report.render(result))
    atomic_write(out / "model.html", html.render(result))
