"""The harness's layout is a rule, not a habit: conformance/ in wings (catalogue, judge,
campaign, reporting, implementations, model, bench) with only its entry points at the top, no
module importing another that imports it back (read with ast, imports inside functions
included), no module over 600 lines, the model command free of pytest and of the
campaign's test modules, and the run's controller free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "conformance"
TOP_LEVEL = {"__init__", "__main__", "cli"}
WINGS = {"catalogue", "judge", "campaign", "reporting", "implementations", "model", "bench"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The conformance modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            if target.startswith("conformance"):
                module = resolve(target)
                if module is not None and module != name:
                    found.add(module)
    return found


def test_no_import_cycle_inside_conformance() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_only_the_entry_points_at_the_top() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL, top
    wings = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert wings == WINGS, wings


def test_no_module_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert not long, long


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys; {code}; print([m for m in sys.modules if m in {modules!r}])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_the_model_command_imports_no_pytest_and_no_campaign_test() -> None:
    code = (
        "import conformance.model.command, conformance.model.run, "
        "conformance.model.counts, conformance.model.replay"
    )
    unwanted = (
        "pytest", "conformance.campaign.tests", "conformance.campaign.arithmetic",
        "conformance.campaign.plugin",
    )  # fmt: skip
    assert _loaded_after(code, unwanted) == []


def test_a_runs_controller_checks_torch_without_importing_it() -> None:
    """The run command's controller checks torch's CPU built-ins by their packages alone:
    its workers import torch, and it would only pay 3 s of CPU for it here."""
    code = (
        "from conformance.implementations import check_implementation as check; "
        "[check(s) for s in ('torch', 'torch-channels_last', 'torch-compile', "
        "'torch[threads:2]')]"
    )
    assert _loaded_after(code, ("torch",)) == []
