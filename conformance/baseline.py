"""The committed baseline of known discrepancies: reports/baseline.csv.

Each entry names an op (or *), an implementation (a glob: torch* is torch and
torch-channels_last), a dtype (or *), a direction (or *), a coverage region of
that op, an action, and the reason, found by a brute-force case, that the implementation and
not the reference is wrong there. With action ``record`` a failing example of that op,
implementation and direction that hits the region is *known*: recorded with the reason, and
not failing the gate. With action ``skip`` the implementation is not called at all in that
region (the call would crash the process); the example is recorded as known, not run. A
``record`` entry whose region was hit in a run without any failure is *stale*.

``confirmed_with`` names the framework and version the entry was confirmed with ("torch
2.13.0", "onnxruntime 1.31.1"); a run on another version reports the entries it could not
confirm (stale there, or never met).
"""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NOT_RUN = "not called: the baseline says this call crashes the process"

COLUMNS = (
    "op",
    "implementation",
    "dtype",
    "direction",
    "region",
    "action",
    "reason",
    "confirmed_with",
)
# a baseline written before confirmed_with existed still loads (the version then unknown)
LEGACY_COLUMNS = COLUMNS[:-1]
ACTIONS = ("record", "skip")


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

    def framework(self) -> tuple[str, str]:
        """(package, version) of confirmed_with; ('', '') when it names none."""
        package, _, version = self.confirmed_with.strip().partition(" ")
        return package, version.strip()

    def matches(self, row: dict[str, Any]) -> bool:
        return (
            self.op in ("*", row["op"])
            and fnmatch.fnmatchcase(str(row["implementation"]), self.implementation)
            and self.dtype in ("*", row["dtype"])
            and self.direction in ("*", row["direction"])
            and (self.region == "*" or self.region in str(row.get("regions") or "").split(";"))
        )


def load_baseline(path: Path) -> list[KnownDiscrepancy]:
    """The entries of a baseline CSV; a missing file is an empty baseline."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = tuple(reader.fieldnames or ())
        if columns not in (COLUMNS, LEGACY_COLUMNS):
            raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}")
        entries = [
            KnownDiscrepancy(**{k: (row[k] or "").strip() for k in columns}) for row in reader
        ]
    for entry in entries:
        if entry.action not in ACTIONS:
            raise ValueError(f"{path}: action must be one of {ACTIONS}, got {entry.action!r}")
    return entries


def explain(
    baseline: list[KnownDiscrepancy], row: dict[str, Any], action: str = "record"
) -> KnownDiscrepancy | None:
    """The first entry with ``action`` whose op, implementation, direction and region match."""
    return next((e for e in baseline if e.action == action and e.matches(row)), None)


def _hits(frame: pd.DataFrame, entry: KnownDiscrepancy, regions: pd.Series) -> pd.Series:
    """entry.matches for every row at once (``regions``: each row's regions as a set). The
    cheap column comparisons narrow the rows first; the implementation pattern is matched
    once per distinct name, the region only on the rows left (a whole campaign's report
    matched every pattern on every row of every entry: 18 million fnmatch calls, 70 s)."""
    hits = np.ones(len(frame), dtype=bool)
    for column, wanted in (
        ("op", entry.op),
        ("dtype", entry.dtype),
        ("direction", entry.direction),
    ):
        if wanted != "*":
            hits &= (frame[column] == wanted).to_numpy()
    names = frame["implementation"].astype(str)
    matching = [n for n in names.unique() if fnmatch.fnmatchcase(n, entry.implementation)]
    hits &= names.isin(matching).to_numpy()
    if entry.region != "*" and hits.any():
        hits[hits] = [entry.region in names_of for names_of in regions.to_numpy()[hits]]
    return pd.Series(hits, index=frame.index)


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
        if r["disagreed"] > 0 or r["not run"] > 0  # a skipped crash cannot be re-confirmed
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
    rows = []
    regions = frame["regions"].fillna("").astype(str).str.split(";").map(set)
    for entry in baseline:
        if frame.empty:
            break
        in_region = _hits(frame, entry, regions)
        if not in_region.any():
            continue
        known = int((frame.loc[in_region, "verdict"] == "known").sum())
        not_run = int((frame.loc[in_region, "problem"] == NOT_RUN).sum())
        rows.append(
            {
                "op": entry.op,
                "implementation": entry.implementation,
                "dtype": entry.dtype,
                "direction": entry.direction,
                "region": entry.region,
                "examples in region": int(in_region.sum()),
                "disagreed": known - not_run,
                "not run": not_run,
                "stale": entry.action == "record" and known == 0,
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
    for index in frame.index[frame["verdict"].isin(["fail", "error"])]:
        entry = explain(baseline, frame.loc[index].to_dict())
        if entry is not None:
            frame.loc[index, "verdict"] = "known"
            frame.loc[index, "known_reason"] = entry.reason
    return frame
