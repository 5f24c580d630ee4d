"""The baseline: known disagreements pass the gate with their reason; crashing calls are not
made; entries that explain nothing are reported stale; malformed files are refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conformance.baseline import NOT_RUN, load_baseline
from conformance.invalid import RULES
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


def test_skip_entry_means_the_call_is_never_made(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        exploding="""
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
    )
    baseline = write(tmp_path / "baseline.csv", "conv1d,exploding,*,forward,bias,skip,crashes")
    out = tmp_path / "report"
    result = run_campaign(
        pytester,
        out,
        "-k",
        "conv1d-float64-forward",
        "--conformance-impl",
        "exploding",
        "--hypothesis-profile=quick",
        f"--conformance-baseline={baseline}",
    )
    result.assert_outcomes(passed=1)
    frame = pd.read_csv(out / "results.csv")
    with_bias = frame["regions"].str.split(";").map(lambda regions: "bias" in regions)
    # every example with a bias was recorded, not run; every other one ran and passed
    assert with_bias.any() and (~with_bias).any()
    assert (frame[with_bias]["problem"] == NOT_RUN).all()
    assert (frame[with_bias]["verdict"] == "known").all()
    assert (frame[~with_bias]["verdict"] == "pass").all()


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

    entries = load_baseline(Path(__file__).parents[2] / "reports" / "baseline.csv")
    assert entries
    rules = {rule.name for rule in RULES}
    for entry in entries:
        # an invalid-call entry names the rule that broke the call; the others a region
        regions = rules if entry.direction == "invalid call" else BY_NAME[entry.op].coverage
        assert entry.region == "*" or entry.region in regions, entry
        assert entry.reason
