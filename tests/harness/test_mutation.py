"""The mutation run (conformance.bench.mutation): mutants generated deterministically with
stable ids, a mutant package that imports and computes something else than the reference,
and one mutant's campaign, at the quick depth on one op, that kills it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conformance.bench import mutants as generation
from conformance.bench.mutation import Settings, reaching, run_mutant
from conformance.bench.mutation_report import figures, settle

ROOT = Path(__file__).parents[2]


def _same_padding_swapped() -> generation.Mutant:
    """same_padding with the odd extra element at the start instead of the end (torch puts
    it at the end): wrong for every even effective kernel."""
    (mutant,) = [
        m
        for m in generation.all_mutants(("shapes",))
        if m.function == "same_padding"
        and m.operator == "swap"
        and "(total - total // 2, total // 2)" in m.after
    ]
    return mutant


def test_mutants_are_generated_deterministically_with_stable_ids() -> None:
    first = generation.all_mutants(("shapes", "padding"))
    second = generation.all_mutants(("shapes", "padding"))
    assert [m.id for m in first] == [m.id for m in second]
    assert len({m.id for m in first}) == len(first) > 50
    picked = [m.id for m in generation.sample(first, 20, seed=3)]
    assert picked == [m.id for m in generation.sample(second, 20, seed=3)]
    assert picked != [m.id for m in generation.sample(first, 20, seed=4)]
    assert {m.module for m in generation.sample(first, 20, seed=3)} == {"shapes", "padding"}
    # an id names no line: lines added above the module keep every id
    source = (generation.REFERENCE / "shapes.py").read_text()
    shifted = generation.module_mutants("shapes", "\n\n\n" + source)
    assert [m.id for m in shifted] == [m.id for m in first if m.module == "shapes"]
    assert [m.line - 3 for m in shifted] == [m.line for m in first if m.module == "shapes"]


def test_every_mutant_parses_and_changes_its_module() -> None:
    import ast

    source = (generation.REFERENCE / "padding.py").read_text()
    original = ast.dump(ast.parse(source))
    for mutant in generation.module_mutants("padding", source):
        assert ast.dump(ast.parse(mutant.source(source))) != original, mutant.id


def test_a_mutant_package_imports_and_differs_from_the_reference(tmp_path: Path) -> None:
    mutant = _same_padding_swapped()
    package = generation.write_package(tmp_path, mutant)
    assert "from reference" not in (package / "conv.py").read_text()
    probe = (
        "import numpy as np, sys, reference, mutant_reference.api as mutant\n"
        "x = np.arange(5.0).reshape(1, 1, 5); w = np.array([[[1.0, 2.0]]])\n"
        "print(reference.conv1d(x, w, padding='same').tolist())\n"
        "print(mutant.conv1d(x, w, padding='same').tolist())\n"
        "print(mutant.conv1d.__module__, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    expected, got, where = done.stdout.splitlines()
    # torch pads the odd extra zero at the end: [0+2, 1*1+2*2, ..., 4*1+2*0]
    assert expected == "[[[2.0, 5.0, 8.0, 11.0, 4.0]]]"
    assert got == "[[[0.0, 2.0, 5.0, 8.0, 11.0]]]"  # the extra zero at the start
    assert where == "mutant_reference.conv False"


def test_the_tests_run_are_those_that_execute_the_mutated_line() -> None:
    mutant = _same_padding_swapped()
    coverage = {
        "test_op[conv1d-float64-forward]": {"shapes.py": set(mutant.lines)},
        "test_op[conv1d-float64-backward]": {"shapes.py": {mutant.lines[0] - 1}},
        "test_invalid_call[conv1d-invalid]": {"conv.py": set(mutant.lines)},
    }
    assert reaching(mutant, coverage) == ["test_op[conv1d-float64-forward]"]


def test_a_listed_survivor_is_equivalent_and_a_listed_kill_is_flagged() -> None:
    row = {"mutant_id": "m", "verdict": "survived", "killed_by": "", "tests": 1, "seconds": 1.0}
    assert settle(row, {"m": "why"})["verdict"] == "equivalent"
    assert settle(row, {})["verdict"] == "survived"
    weak = settle(row, {}, {"m": "the rule is missing"})
    assert (weak["verdict"], weak["explanation"]) == ("survived", "the rule is missing")
    killed = settle({**row, "verdict": "killed", "killed_by": "x"}, {"m": "why"})
    assert killed["verdict"] == "killed" and killed["explanation"].startswith("LISTED")
    at_import = {**row, "mutant_id": "i", "verdict": "killed", "killed_by": "import"}
    rows = [settle(row, {"m": "why"}), killed, settle({**row, "mutant_id": "n"}, {}), at_import]
    found = figures(rows)
    assert (found["killed"], found["survived"], found["equivalent"]) == (2, 1, 1)
    assert found["killed at import"] == 1
    assert found["kill rate"] == 2 / 3 and found["kill rate past import"] == 0.5


def test_a_killable_mutant_is_killed_at_the_quick_depth(tmp_path: Path) -> None:
    settings = Settings(profile="quick", seed=1, timeout=110, workers="1")
    row = run_mutant(
        _same_padding_swapped(), ["test_op[conv1d-float64-forward]"], settings, tmp_path
    )
    assert row["verdict"] == "killed", row
    assert row["killed_by"] == "conv1d-float64-forward"
    assert row["ops"] == "conv1d"
