"""What a campaign's process does once, when pytest configures it: start the implementations'
zygotes, import the whole suite, and take what that loaded out of the garbage collector's
sight."""

from __future__ import annotations

import gc
import importlib
import pkgutil
from typing import Any

import pytest

from conformance.campaign.header import implementation_specs
from conformance.implementations import code_paths
from conformance.implementations.isolation import start_zygote


def worker_input(config: pytest.Config) -> dict[str, Any] | None:
    """What an xdist worker's controller sent it (None: not a worker)."""
    return getattr(config, "workerinput", None)


def import_every_module() -> None:
    """Import all of conformance and reference up front. Hypothesis biases generation with
    constants found in the local modules loaded so far; loading the same set in every
    process (a serial run, an xdist worker) makes a seed give the same examples in each."""
    import conformance
    import reference

    for package in (conformance, reference):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            # the adapters import their frameworks (jax, onnx...), optional and heavy: each
            # loads when its implementation does
            adapter = module.name.startswith("conformance.implementations.")
            if not module.name.endswith("__main__") and not adapter:
                importlib.import_module(module.name)


def xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands its tests to xdist workers (and runs none itself)."""
    return worker_input(config) is None and bool(getattr(config.option, "numprocesses", None))


def start_zygotes(config: pytest.Config) -> None:
    """In a campaign's process that runs its tests (a serial run, an xdist worker): each
    implementation's zygote, started before this process's own imports and collection, which
    it then overlaps, instead of at the first test (a worker waited 4-5 s for it there)."""
    if config.getoption("conformance_report") is None:  # not a campaign: the project's tests
        return
    if config.getoption("conformance_isolation") == "none":
        return
    if xdist_controller(config):
        return  # its workers run the tests
    for spec in implementation_specs(config):
        try:
            start_zygote(spec, config.getoption("conformance_device"), code_paths.environment(spec))
        except ValueError:  # the implementation fixture names what is wrong
            continue


def prepare_process(config: pytest.Config) -> None:
    start_zygotes(config)
    if xdist_controller(config):
        # it draws no example, so the constants need not match; and what it would import
        # (torch: 3 s of CPU here, once per run) its report never uses
        return
    import_every_module()
    # What start-up loaded (torch, pandas, the suite: about 270,000 objects) lives as long as
    # the process: out of the collector's sight, each full collection of a campaign no longer
    # walks it (0.2 s each, 1.2 s of a ci worker's 30)
    gc.freeze()
