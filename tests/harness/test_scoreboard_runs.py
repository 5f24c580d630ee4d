"""The standing scoreboard: its shards name built-in implementations, tox, the nightly
workflow and the README agree on them, and a merge rewrites the README's grid from a real run
(two tiny shards) without touching the text around it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conformance.campaign import scoreboard
from conformance.implementations import BUILT_IN

ROOT = Path(__file__).resolve().parents[2]


def test_every_shard_runs_built_in_implementations() -> None:
    for shard in scoreboard.SHARDS:
        names = shard.arguments[shard.arguments.index("--impl") + 1].split(",")
        assert set(names) <= set(BUILT_IN), (shard.name, names)
    covered = {
        name
        for shard in scoreboard.SHARDS
        for name in shard.arguments[shard.arguments.index("--impl") + 1].split(",")
    }
    assert covered == set(BUILT_IN), set(BUILT_IN) - covered


def test_the_nightly_workflow_runs_every_shard() -> None:
    workflow = (ROOT / ".github" / "workflows" / "scoreboard.yml").read_text(encoding="utf-8")
    matrix = re.search(r"shard: \[([^\]]*)\]", workflow)
    assert matrix is not None
    assert [s.strip() for s in matrix.group(1).split(",")] == list(scoreboard.BY_NAME)
    assert "scoreboard.py" in (ROOT / "tox.ini").read_text(encoding="utf-8") or (
        "conformance.campaign.scoreboard" in (ROOT / "tox.ini").read_text(encoding="utf-8")
    )


def test_the_readme_has_the_generated_grid_markers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(scoreboard.BEGIN) == 1 and readme.count(scoreboard.END) == 1


def test_an_unknown_shard_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.campaign.scoreboard", "run", "jaxx"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown shard 'jaxx'" in done.stderr


def test_merge_writes_the_grid_from_the_shards_that_ran(tmp_path: Path) -> None:
    shards = (
        scoreboard.Shard("eager", ("--impl", "torch", "--ops", "output_shape,conv1d",
                                   "--dtypes", "float64", "--max-examples", "3"), "tiny"),
        scoreboard.Shard("jax", ("--impl", "torch-channels_last", "--ops", "conv1d",
                                 "--dtypes", "float64", "--max-examples", "3"), "tiny"),
    )  # fmt: skip
    environment = {**os.environ, "CONFORMANCE_WORKERS": "1", "SCOREBOARD_SEED": "3"}
    for shard in shards:
        command = [sys.executable, "-m", "conformance", "run", *shard.arguments,
                   "--profile", "quick", "--min-examples", "0", "--seed", "3",
                   "--out", str(scoreboard.shard_dir(tmp_path, shard.name)), "-n", "1"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, check=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{scoreboard.BEGIN}\nold grid\n{scoreboard.END}\n\nafter\n")
    done = subprocess.run(
        [sys.executable, "-m", "conformance.campaign.scoreboard", "merge", "--root",
         str(tmp_path), "--readme", str(readme)],
        capture_output=True, text=True, cwd=ROOT, env=environment, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = readme.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\nafter\n")
    assert "old grid" not in text
    merged = pd.read_parquet(tmp_path / "scoreboard" / "results.parquet")
    assert set(merged["implementation"]) == {"torch", "torch-channels_last"}
    grid = text.split(scoreboard.BEGIN)[1].split(scoreboard.END)[0]
    assert f"{len(merged):,} examples, none failed" in grid
    for op in ("output_shape", "conv1d"):
        assert re.search(rf"^\| {op} +\|", grid, re.MULTILINE), grid
    assert "| eager | torch |" in grid and "| jax | torch-channels_last |" in grid
