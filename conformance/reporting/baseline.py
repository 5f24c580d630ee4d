"""The baseline of known discrepancies: the suite ships its own (conformance/reporting/
baseline.csv, package data: torch's and every built-in implementation's known defects), and
a user's ``--baseline FILE`` adds to it.

Each entry names an op (or *), an implementation (a glob: torch* is torch, its code paths and
torch-channels_last), a dtype (or *), a direction (or *), a coverage region of that op, an
action, the outputs it explains, a platform condition, the reason, found by a brute-force
case, that the implementation and not the reference is wrong there, the version it was
confirmed with and its upstream status.

- action ``record``: a failing example of that op, implementation, dtype and direction that
  hits the region is *known*: recorded with the reason, and not failing the gate. A record
  entry whose region was hit in a run without any failure is *stale*.
- action ``isolate``: the same, and every call in the region is made in a process of its own
  that ends with it (the call damages the memory of its process: later, correct calls would
  crash or read garbage). ``skip``, which once meant "never make the call", reads as isolate:
  the suite makes every call and judges its crash.
- ``outputs``: what the entry explains, ``*`` for any disagreement, else ';'-separated output
  names (``output``, ``indices``, ``grad_input``, ...) and verdicts (``crash``, ``hang``,
  ``error``; for an invalid call ``accepted`` or ``rejected``). An example is known only when
  every one of its failing outputs is explained, so that one known defect cannot hide another.
- ``platform``: a condition on the implementation's code path (conformance.implementations.
  code_paths.condition_holds, e.g. ``onednn>=avx512_core_fp16``); an entry whose condition
  does not hold where the run judged is not applied, and the report lists it.
- ``confirmed_with`` names the framework and version the entry was confirmed with ("torch
  2.13.0"); a run on another version reports the entries it could not confirm.
- ``upstream``: the upstream issue that reports the defect, or "not found upstream as of
  DATE".
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conformance.implementations.code_paths import check_condition, condition_holds
from conformance.reporting.results import FAILING

COLUMNS = (
    "op",
    "implementation",
    "dtype",
    "direction",
    "region",
    "action",
    "outputs",
    "platform",
    "reason",
    "confirmed_with",
    "upstream",
)
# baselines written before outputs, platform and upstream (or confirmed_with) existed still load
OLDER_COLUMNS = (
    ("op", "implementation", "dtype", "direction", "region", "action", "reason", "confirmed_with"),
    ("op", "implementation", "dtype", "direction", "region", "action", "reason"),
)
ACTIONS = ("record", "isolate")
OLD_ACTIONS = {"skip": "isolate"}


@dataclass(frozen=True)
class KnownDiscrepancy:
    op: str
    implementation: str
    dtype: str
    direction: str
    region: str
    action: str
    reason: str
    confirmed_with: str = ""
    outputs: str = "*"
    platform: str = ""
    upstream: str = ""

    def framework(self) -> tuple[str, str]:
        """(package, version) of confirmed_with; ('', '') when it names none."""
        package, _, version = self.confirmed_with.strip().partition(" ")
        return package, version.strip()

    def explains(self) -> set[str]:
        """The outputs and verdicts it explains ('*': any)."""
        return {part.strip() for part in self.outputs.split(";") if part.strip()} or {"*"}

    def matches(self, row: Mapping[str, Any]) -> bool:
        return self.in_group(row) and any(
            fnmatch.fnmatchcase(region, self.region)
            for region in str(row.get("regions") or "").split(";")
        )

    def in_group(self, row: Mapping[str, Any]) -> bool:
        """Whether the entry can match the row's group (op, implementation, dtype,
        direction), whatever its regions."""
        return (
            self.op in ("*", row["op"])
            and fnmatch.fnmatchcase(str(row["implementation"]), self.implementation)
            and self.dtype in ("*", row["dtype"])
            and self.direction in ("*", row["direction"])
        )


SHIPPED = Path(__file__).with_name("baseline.csv")


def load_baselines(paths: Sequence[Path] = (), shipped: bool = True) -> list[KnownDiscrepancy]:
    """The shipped baseline (unless ``shipped`` is False), then each of ``paths``: the first
    entry that explains an example is the one its row names."""
    entries = load_baseline(SHIPPED) if shipped else []
    for path in paths:
        if not path.is_file():
            raise ValueError(f"--baseline: no such file: {path}")
        entries += load_baseline(path)
    return entries


def load_baseline(path: Path) -> list[KnownDiscrepancy]:
    """The entries of a baseline CSV; a missing file is an empty baseline."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = tuple(reader.fieldnames or ())
        if columns != COLUMNS and columns not in OLDER_COLUMNS:
            raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}")
        entries = []
        for row in reader:
            values = {k: (row[k] or "").strip() for k in columns}
            values["action"] = OLD_ACTIONS.get(values["action"], values["action"])
            if "outputs" in values and not values["outputs"]:
                values["outputs"] = "*"
            entries.append(KnownDiscrepancy(**values))
    for entry in entries:
        if entry.action not in ACTIONS:
            raise ValueError(f"{path}: action must be one of {ACTIONS}, got {entry.action!r}")
        try:
            check_condition(entry.platform)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return entries


def on_platform(
    baseline: list[KnownDiscrepancy], facts: Mapping[str, Any]
) -> list[KnownDiscrepancy]:
    """The entries whose platform condition holds where an implementation runs (``facts``:
    conformance.implementations.code_paths.platform_facts)."""
    return [e for e in baseline if not e.platform or condition_holds(e.platform, facts)]


def causes(row: Mapping[str, Any]) -> set[str]:
    """What is wrong in a failing row: its failing outputs, or its verdict (crash, hang,
    error), or for an invalid call who alone rejected it."""
    failed = row.get("failed_outputs")
    if isinstance(failed, str) and failed:
        return set(failed.split(";"))
    if row.get("direction") == "invalid call":
        verdict = str(row.get("error_verdict", ""))
        if verdict == "only the reference rejected":
            return {"accepted"}
        if verdict == "only the implementation rejected":
            return {"rejected"}
    return {str(row.get("verdict", "fail"))}


def explain(baseline: list[KnownDiscrepancy], row: Mapping[str, Any]) -> KnownDiscrepancy | None:
    """The entry (or entries, joined) that explain every failing output of ``row``; None when
    some of it is unexplained. Oracle and harness errors are the suite's own: never known."""
    if row.get("verdict") in ("oracle error", "harness error"):
        return None
    matching = [e for e in baseline if e.matches(row)]
    if not matching:
        return None
    wanted = causes(row)
    used: list[KnownDiscrepancy] = []
    left = set(wanted)
    for entry in matching:
        explained = entry.explains()
        if "*" in explained:
            return entry
        if explained & left:
            used.append(entry)
            left -= explained
        if not left:
            break
    if left:
        return None
    if len(used) == 1:
        return used[0]
    return replace(
        used[0], outputs=";".join(sorted(wanted)), reason=" | ".join(e.reason for e in used)
    )


def isolating(baseline: list[KnownDiscrepancy], row: Mapping[str, Any]) -> KnownDiscrepancy | None:
    """The first isolate entry whose region the example is in: its call gets a process of
    its own."""
    return next((e for e in baseline if e.action == "isolate" and e.matches(row)), None)


def isolating_in_group(
    baseline: list[KnownDiscrepancy], group: Mapping[str, Any]
) -> list[KnownDiscrepancy]:
    """The isolate entries that can match an example of ``group`` (its op, implementation,
    dtype and direction), in order: isolating() over them is isolating() over the whole
    baseline for every example of the group, and looks at far fewer entries."""
    return [e for e in baseline if e.action == "isolate" and e.in_group(group)]


class _Rows:
    """A frame's rows by (op, dtype, direction, implementation), and each row's regions, for
    matching every baseline entry: an entry's cheap fields pick whole groups (a few hundred
    in a campaign), its region is matched only on the rows left (matching every row against
    every entry took 70 s a campaign once; masking the whole frame per entry 5 s)."""

    KEYS = ("op", "dtype", "direction", "implementation")

    def __init__(self, frame: pd.DataFrame) -> None:
        self.size = len(frame)
        keys = frame[list(self.KEYS)].astype(str)
        self.groups = keys.groupby(list(self.KEYS), sort=False).indices
        self.regions = frame["regions"].fillna("").astype(str).to_numpy(dtype=object)

    def hits(self, entry: KnownDiscrepancy) -> np.ndarray:
        """entry.matches for every row at once, as a boolean array."""
        chosen = [
            rows
            for (op, dtype, direction, implementation), rows in self.groups.items()
            if entry.op in ("*", op)
            and entry.dtype in ("*", dtype)
            and entry.direction in ("*", direction)
            and fnmatch.fnmatchcase(implementation, entry.implementation)
        ]
        hits = np.zeros(self.size, dtype=bool)
        if not chosen:
            return hits
        rows = np.concatenate(chosen)
        if entry.region != "*":
            rows = rows[[entry.region in text.split(";") for text in self.regions[rows]]]
        hits[rows] = True
        return hits


def _release(version: str) -> str:
    """A version without its local label: torch's '2.13.0+cpu' is release 2.13.0."""
    return version.split("+", 1)[0].strip()


def unconfirmed(
    frame: pd.DataFrame,
    baseline: list[KnownDiscrepancy],
    versions: dict[str, str],
    known: pd.DataFrame | None = None,
) -> list[str]:
    """Entries confirmed with another version of their framework than this run's
    (``versions``: package -> version of the run) that this run did not confirm: no
    disagreement in their region, whether or not the region was hit. ``known``: the run's
    known_table, when the caller has it already."""
    implementations = set(frame["implementation"].astype(str)) if not frame.empty else set()
    table = known_table(frame, baseline) if known is None else known
    disagreed = {
        (r["op"], r["implementation"], r["dtype"], r["direction"], r["region"])
        for r in table.to_dict("records")
        if r["disagreed"] > 0
    }
    found = []
    ops = set(frame["op"].astype(str)) if not frame.empty else set()
    for entry in baseline:
        package, version = entry.framework()
        if not package or package not in versions or entry.op not in ops | {"*"}:
            continue
        if _release(versions[package]) == _release(version):
            continue
        if not any(fnmatch.fnmatchcase(name, entry.implementation) for name in implementations):
            continue
        key = (entry.op, entry.implementation, entry.dtype, entry.direction, entry.region)
        if key not in disagreed:
            found.append(
                f"{entry.op} {entry.implementation} {entry.dtype} {entry.direction}, "
                f"{entry.region}: confirmed with {entry.confirmed_with}, this run has "
                f"{package} {versions[package]}"
            )
    return found


def known_table(frame: pd.DataFrame, baseline: list[KnownDiscrepancy]) -> pd.DataFrame:
    """Per baseline entry that applies to this run: examples in its region, how many of them
    disagreed (known), and whether it is stale (its region was hit, nothing disagreed)."""
    rows: list[dict[str, Any]] = []
    if frame.empty:
        return pd.DataFrame(rows)
    index = _Rows(frame)
    known_rows = (frame["verdict"] == "known").to_numpy()
    for entry in baseline:
        in_region = index.hits(entry)
        if not in_region.any():
            continue
        known = int(known_rows[in_region].sum())
        rows.append(
            {
                "op": entry.op,
                "implementation": entry.implementation,
                "dtype": entry.dtype,
                "direction": entry.direction,
                "region": entry.region,
                "outputs": entry.outputs,
                "examples in region": int(in_region.sum()),
                "disagreed": known,
                "stale": known == 0,
                "confirmed with": entry.confirmed_with,
                "reason": entry.reason,
            }
        )
    return pd.DataFrame(rows)


def explain_frame(frame: pd.DataFrame, baseline: list[KnownDiscrepancy]) -> pd.DataFrame:
    """Failures that an entry of the (newer) baseline explains become known, with its reason:
    a report re-rendered after a finding was recorded needs no new run."""
    if frame.empty:
        return frame
    frame = frame.copy()
    if "known_reason" not in frame:
        frame["known_reason"] = None
    frame["known_reason"] = frame["known_reason"].astype(object)
    if "explained_verdict" not in frame:
        frame["explained_verdict"] = None
    frame["explained_verdict"] = frame["explained_verdict"].astype(object)
    for index in frame.index[frame["verdict"].isin(FAILING)]:
        entry = explain(baseline, frame.loc[index].to_dict())
        if entry is not None:
            frame.loc[index, "explained_verdict"] = frame.loc[index, "verdict"]
            frame.loc[index, "verdict"] = "known"
            frame.loc[index, "known_reason"] = entry.reason
    return frame
