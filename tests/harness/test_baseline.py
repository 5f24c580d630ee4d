"""The baseline: known disagreements pass the gate with their reason, each entry explaining
only the outputs it names; known crashes are judged like any call, those that damage their
process in a process of their own; entries that explain nothing are reported stale; malformed
files are refused."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pandas as pd
import pytest

from conformance.judge.invalid import RULES
from conformance.reporting.baseline import (
    COLUMNS,
    SHIPPED,
    KnownDiscrepancy,
    explain,
    isolating,
    isolating_in_group,
    load_baseline,
    load_baselines,
)
from tests.harness.test_plugin import run_campaign

pytest_plugins = ["pytester"]

HEADER = "op,implementation,dtype,direction,region,action,reason\n"


def write(path: Path, *lines: str) -> Path:
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def test_known_disagreement_passes_and_is_reported(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    baseline = write(
        tmp_path / "baseline.csv",
        "conv2d,wrong-same-padding,*,forward,\"padding='same', even kernel\",record,planted bug",
        "conv2d,wrong-same-padding,*,forward,stride > 1,record,explains nothing",
    )
    out = tmp_path / "report"
    result = run_campaign(
        pytester,
        out,
        "-k",
        "conv2d-float64-forward",
        "--conformance-impl",
        "wrong_padding",
        "--hypothesis-profile=ci",
        "--hypothesis-seed=1",  # a seed whose ci run meets the bug (9 seeds of 0-9 do)
        f"--conformance-baseline={baseline}",
    )
    result.assert_outcomes(passed=1)
    frame = pd.read_csv(out / "results.csv")
    known = frame[frame["verdict"] == "known"]
    assert len(known) > 0 and (known["known_reason"] == "planted bug").all()
    assert not frame["verdict"].isin(["fail", "error"]).any()
    summary = (out / "summary.md").read_text()
    assert "planted bug" in summary and "explains nothing" in summary
    table = summary.split("## Known discrepancies", 1)[1].split("\n- **", 1)[0]
    stale_row = next(line for line in table.splitlines() if "stride > 1" in line)
    assert stale_row.rstrip(" |").endswith("True"), stale_row  # hit, never disagreed: stale


EXPLODING = """
import os
import reference
name = "exploding"
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    if bias is not None:
        os._exit(3)  # a crash no exception handler can catch
    return reference.conv1d(input, weight, bias, stride, padding, dilation, groups,
                            padding_mode)
"""


@pytest.mark.parametrize(("outputs", "explained"), [("crash", True), ("output", False)])
def test_a_known_crash_is_matched_against_its_verdict(
    pytester: pytest.Pytester, tmp_path: Path, outputs: str, explained: bool
) -> None:
    pytester.makepyfile(exploding=EXPLODING)
    baseline = tmp_path / "baseline.csv"
    baseline.write_text(
        ",".join(COLUMNS) + f"\nconv1d,exploding,*,forward,bias,record,{outputs},,crashes,,\n"
    )
    out = tmp_path / "report"
    result = run_campaign(
        pytester, out, "-k", "conv1d-float64-forward", "--conformance-impl", "exploding",
        "--hypothesis-profile=quick", "--hypothesis-seed=2", f"--conformance-baseline={baseline}",
    )  # fmt: skip
    frame = pd.read_csv(out / "results.csv")
    with_bias = frame["regions"].str.split(";").map(lambda regions: "bias" in regions)
    assert with_bias.any() and (frame[~with_bias]["verdict"] == "pass").all()
    if explained:  # every call with a bias was made, and its crash is known
        result.assert_outcomes(passed=1)
        assert (frame[with_bias]["verdict"] == "known").all()
        assert (frame[with_bias]["explained_verdict"] == "crash").all()
    else:  # an entry for wrong values does not explain a crash
        result.assert_outcomes(failed=1)
        assert (frame[with_bias]["verdict"] == "crash").any()


POISONING = """
import reference
name = "poisoning"
_poisoned = []
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    output = reference.conv1d(input, weight, bias, stride, padding, dilation, groups,
                              padding_mode)
    if _poisoned:
        return output + 1  # a call after the damage is wrong
    if bias is not None:
        _poisoned.append(True)  # right, but damages its process (as heap corruption does)
    return output
"""


@pytest.mark.parametrize("action", ["isolate", "record"])
def test_isolate_entries_keep_their_calls_in_quarantine(
    pytester: pytest.Pytester, tmp_path: Path, action: str
) -> None:
    pytester.makepyfile(poisoning=POISONING)
    baseline = tmp_path / "baseline.csv"
    baseline.write_text(
        ",".join(COLUMNS) + f"\nconv1d,poisoning,*,forward,bias,{action},*,,damages,,\n"
    )
    out = tmp_path / "report"
    result = run_campaign(
        pytester, out, "-k", "conv1d-float64-forward", "--conformance-impl", "poisoning",
        "--hypothesis-profile=quick", "--hypothesis-seed=2", f"--conformance-baseline={baseline}",
    )  # fmt: skip
    frame = pd.read_csv(out / "results.csv")
    with_bias = frame["regions"].str.split(";").map(lambda regions: "bias" in regions)
    if action == "isolate":  # the damage stays in the quarantine: no other call meets it
        result.assert_outcomes(passed=1)
        assert with_bias.any() and (frame[~with_bias]["verdict"] == "pass").all()
        assert frame[with_bias]["verdict"].isin(["pass", "known"]).all()
    else:  # made in the helper, the damage reaches the calls after it: history-dependent
        result.assert_outcomes(failed=1)
        failing = frame[frame["verdict"] == "fail"].iloc[-1]
        assert failing["reproduced"] == "history-dependent"


def test_a_groups_isolate_entries_decide_as_the_whole_baseline() -> None:
    """The campaign asks isolating() of a group's own isolate entries: the same answer, for
    every group and region of the shipped baseline (and a region no entry names)."""
    entries = load_baselines()
    isolates = [e for e in entries if e.action == "isolate"]
    assert isolates, "the shipped baseline has isolate entries to try"
    for entry in isolates:
        for implementation in ("torch", "torch[cuda]", "jax", "onnxruntime"):
            for dtype in ("float64", "float16"):
                op = entry.op if entry.op != "*" else "conv2d"
                direction = entry.direction if entry.direction != "*" else "forward"
                group = {"op": op, "implementation": implementation, "dtype": dtype,
                         "direction": direction}  # fmt: skip
                own = isolating_in_group(entries, group)
                for region in (entry.region, "nothing named", ""):
                    row = {**group, "regions": f"unbatched;{region}"}
                    assert isolating(own, row) is isolating(entries, row)


def test_an_old_skip_entry_reads_as_isolate(tmp_path: Path) -> None:
    path = write(tmp_path / "baseline.csv", "conv1d,torch,*,*,bias,skip,crashes")
    (entry,) = load_baseline(path)
    assert entry.action == "isolate" and entry.outputs == "*"


def test_an_entry_explains_only_the_outputs_it_names() -> None:
    entry = KnownDiscrepancy("max_pool1d", "torch", "*", "*", "*", "record", "nan", "", "output")
    row = {"op": "max_pool1d", "implementation": "torch", "dtype": "float64",
           "direction": "forward", "regions": "", "verdict": "fail"}  # fmt: skip
    assert explain([entry], {**row, "failed_outputs": "output"}) is entry
    assert explain([entry], {**row, "failed_outputs": "output;indices"}) is None
    other = KnownDiscrepancy("*", "torch", "*", "*", "*", "record", "ties", "", "indices")
    joined = explain([entry, other], {**row, "failed_outputs": "output;indices"})
    assert joined is not None and joined.reason == "nan | ties"
    assert explain([entry], {**row, "verdict": "oracle error", "failed_outputs": "output"}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("op,implementation,direction,region,reason\n", "expected the columns"),
        (HEADER + "conv1d,torch,*,*,bias,ignore,why\n", "action must be one of"),
    ],
)
def test_malformed_baseline_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "baseline.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_baseline(path)


def test_committed_baseline_loads_and_names_real_regions() -> None:
    from conformance.catalogue import BY_NAME

    entries = load_baseline(SHIPPED)
    assert entries
    rules = {rule.name for rule in RULES}
    for entry in entries:
        # an invalid-call entry names the rule that broke the call; the others a region
        regions = rules if entry.direction == "invalid call" else BY_NAME[entry.op].coverage
        # a region is a glob: it must match at least one real name
        assert any(fnmatch.fnmatchcase(name, entry.region) for name in regions), entry
        assert entry.reason
        assert entry.action in ("record", "isolate"), entry  # no call goes unmade
