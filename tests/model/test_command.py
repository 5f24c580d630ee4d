"""python -m conformance model on every shipped factory, on tiny networks whose figures are
known by hand, with a planted bug, and on bad input."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest
import torch

from conformance.cli import main
from conformance.model import zoo

ROOT = Path(__file__).parents[2]
COLUMNS = ["layer", "kind", "input_shape", "output_shape", "parameters", "macs",
           "flops_forward", "flops_backward", "receptive_field", "jump", "worst_bound_ratio",
           "verdict"]  # fmt: skip

# every shipped factory (tests.model.small: narrowed where it takes a width), with an input
# small enough for seconds, yet leaving each batch norm more than one value per channel
SHIPPED = [
    ("resnet18", "2,3,32,32"),
    ("resnet50", "2,3,32,32"),
    ("mobilenet_v2", "2,3,32,32"),
    ("vgg11", "1,3,32,32"),
    ("dilated_segmentation", "1,3,32,32"),
    ("unet", "1,1,32,32"),
    ("c3d_small", "1,3,4,16,16"),
]


def run_model(out: Path, spec: str, shape: str, *extra: str) -> tuple[int, pd.DataFrame | None]:
    code = main(["model", spec, "--input-shape", shape, "--out", str(out), *extra])
    layers = out / "layers.csv"
    return code, pd.read_csv(layers) if layers.exists() else None


@pytest.mark.parametrize("impl", ["torch", "torch-channels_last"])
@pytest.mark.parametrize(("factory", "shape"), SHIPPED, ids=[name for name, _ in SHIPPED])
def test_every_shipped_factory_passes_the_whole_checklist(
    tmp_path: Path, factory: str, shape: str, impl: str
) -> None:
    code, table = run_model(tmp_path, f"tests.model.small:{factory}", shape, "--impl", impl)
    assert table is not None
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS or set(COLUMNS) <= set(table.columns)
    problems = table.loc[table["verdict"] == "fail", ["layer", "problem"]].to_string()
    assert code == 0, problems
    assert set(table["verdict"]) <= {"pass", "not checked", "known"}
    checked = table[table["verdict"] != "not checked"]
    assert (checked["worst_bound_ratio"] <= 1).all()
    assert checked["kind"].str.contains("Conv|Pool|BatchNorm").all()
    # every layer's field matches the probe; no shape, count or FLOP disagreement
    assert table["probe"].str.startswith("match").all(), table["probe"].unique()
    assert not table["shape_check"].str.startswith("MISMATCH").any()
    assert not table["parameters_check"].str.startswith("MISMATCH").any()
    assert not table["flops_note"].str.startswith("UNEXPLAINED").any()
    model = getattr(__import__("tests.model.small", fromlist=[factory]), factory)()
    assert table["parameters"].sum() == sum(p.numel() for p in model.parameters())
    assert (tmp_path / "model.md").read_text().startswith("# Model report: PASS")
    assert "<img" in (tmp_path / "model.html").read_text()


def test_a_bug_planted_in_one_layer_kind_is_caught_at_its_first_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture is wrong only for 1x1 convolutions of stride 2; in ResNet-18 the first is
    the projection shortcut of stage 2's first block, whose own main path (two 3x3
    convolutions, the first strided) comes before it in the forward pass and passes."""
    spec, shape = "conformance.model.zoo:resnet18", "2,3,32,32"
    code, table = run_model(tmp_path, spec, shape, "--impl", "tests.model.strided_pointwise")
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "first failing layer: layer2.0.downsample.0: conv2d forward: output: error" in printed
    assert table is not None
    failing = table.loc[table["verdict"] == "fail", "layer"].tolist()
    assert failing == [f"layer{s}.0.downsample.0" for s in (2, 3, 4)]
    before = table.iloc[: table.index[table["layer"] == "layer2.0.downsample.0"][0]]
    assert before.loc[before["verdict"] != "not checked", "verdict"].eq("pass").all()
    assert "layer2.0.conv1" in set(before["layer"])  # the strided 3x3 came first, and passed
    (repro,) = (tmp_path / "repro").glob("layer2.0.downsample.0-conv2d-forward.py")
    monkeypatch.chdir(ROOT)  # where the implementation imports from
    runpy.run_path(str(repro), run_name="__main__")
    replayed = capsys.readouterr().out
    assert float(replayed.split("worst error / bound:")[1].split()[0]) > 1


def test_statistics_of_a_known_activation(tmp_path: Path) -> None:
    """Channel 0 is -1 everywhere, channel 1 is 2: means -1 and 2, deviations 0, and after
    the ReLU one dead channel."""
    code, table = run_model(tmp_path, "tests.model.tiny:dead_channel", "2,1,5,5")
    assert code == 0 and table is not None
    conv, relu = table.iloc[0], table.iloc[1]
    assert (conv["mean_min"], conv["mean_max"], conv["std_max"]) == (-1.0, 2.0, 0.0)
    assert pd.isna(conv["dead_channels"]) and relu["dead_channels"] == 1
    assert (relu["mean_min"], relu["mean_max"]) == (0.0, 2.0)


def test_counts_and_alternatives_by_hand(tmp_path: Path) -> None:
    """3x3, 32 -> 64, no bias, on 8 x 8 padded by 1: 18,432 weights, 64 positions x 18,432
    MACs; depthwise-separable 3*3*32 + 32*64 = 2,336 weights. The depthwise 3x3 (64
    groups): 64 x 64 x 9 MACs; FlopCounterMode counts its grad_weight 64 times."""
    code, table = run_model(tmp_path, "tests.model.tiny:standard_and_depthwise", "1,32,8,8")
    assert code == 0 and table is not None
    standard, depthwise = table.iloc[0], table.iloc[1]
    assert standard["parameters"] == 18_432 and standard["macs"] == 64 * 18_432
    assert standard["separable_parameters"] == 2_336
    assert standard["separable_macs"] == 64 * (32 * 9 + 32 * 64)
    assert standard["pointwise_parameters"] == 32 * 64
    assert standard["flops_note"] == "equal"
    assert standard["flops_backward"] == standard["flops_backward_torch"] == 4 * 64 * 18_432
    macs = 64 * 64 * 9
    assert depthwise["macs"] == macs and pd.isna(depthwise["separable_parameters"])
    assert depthwise["flops_backward"] == 4 * macs
    assert depthwise["flops_backward_torch"] == 2 * macs + 64 * 2 * macs
    assert depthwise["flops_note"].startswith("explained: it counts a grouped convolution")


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (
            ["no_such_package.models:net", "--input-shape", "1,3,8,8"],
            "SPEC: cannot import 'no_such_package.models'",
        ),
        (
            ["conformance.model.zoo:resnet99", "--input-shape", "1,3,8,8"],
            "SPEC: conformance.model.zoo has no 'resnet99'",
        ),
        (
            ["collections:OrderedDict", "--input-shape", "1,3,8,8"],
            "SPEC: collections:OrderedDict() returned a OrderedDict, not a torch.nn.Module",
        ),
        (
            ["conformance.model.zoo:resnet18", "--input-shape", "1,1,64,64"],
            "--input-shape: the model rejects 1,1,64,64: RuntimeError",
        ),
        (
            ["conformance.model.zoo:resnet18", "--input-shape", "1,3,x"],
            "--input-shape: expected positive integers",
        ),
        (
            ["tests.model.tiny:dead_channel", "--input-shape", "1,1,4,4", "--impl", "nope"],
            "--impl: implementation 'nope': cannot import 'nope'",
        ),
    ],
    ids=["no-import", "no-factory", "not-a-module", "rejected-shape", "bad-shape", "bad-impl"],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], says: str
) -> None:
    assert main(["model", *arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"conformance model: error: {says}"), error
    assert error.count("\n") == 1 and "Traceback" not in error


def test_an_oracle_over_its_memory_budget_names_the_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_model(tmp_path, "tests.model.tiny:dead_channel", "1,1,4,4", "--memory-budget",
                        "1e-9")  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("conformance model: error: layer '0' (conv2d forward): input and ")
    assert "im2col buffer" in error and error.count("\n") == 1


def test_the_published_parameter_counts() -> None:
    """The counts the papers' ImageNet models have (torchvision's model zoo)."""
    for factory, published in (
        (zoo.resnet18, 11_689_512),
        (zoo.resnet50, 25_557_032),
        (zoo.mobilenet_v2, 3_504_872),
        (zoo.vgg11, 132_863_336),
    ):
        with torch.device("meta"):  # shapes only: no memory, no initialization time
            model = factory()
        assert sum(p.numel() for p in model.parameters()) == published, factory.__name__


def test_layers_the_catalogue_does_not_know_are_listed_with_their_counts(tmp_path: Path) -> None:
    code, table = run_model(tmp_path, "tests.model.tiny:Unknown", "2,3,6,6")
    assert code == 0 and table is not None
    by_layer = table.set_index("layer")
    assert by_layer.loc["gelu", "verdict"] == "not checked"
    assert by_layer.loc["gelu", "problem"] == "no catalogue op for GELU"
    attention = by_layer.loc["attention.multi_head_attention_forward"]
    # in_proj 3 x 8 x 8 + 24, out_proj 8 x 8 + 8: counted where first used, no MACs claimed
    assert attention["verdict"] == "not checked" and attention["parameters"] == 3 * 72 + 72
    assert pd.isna(attention["macs"])
    assert table["parameters"].sum() == 224 + 288 + 36  # and the two convolutions'
    assert set(by_layer.loc[["conv", "squeeze", "head"], "verdict"]) == {"pass"}
    # no closed form after bilinear upsampling: said, not guessed
    assert by_layer.loc["up", "receptive_field"] == "-" and by_layer.loc["up", "probe"] == (
        "no closed form"
    )


def test_the_same_seed_gives_the_same_report(tmp_path: Path) -> None:
    """The seed fixes the factory's initialization, the batch, the labels and dropout."""
    spec, shape = "tests.model.small:c3d_small", "1,3,4,16,16"
    first = run_model(tmp_path / "a", spec, shape, "--seed", "7")[1]
    second = run_model(tmp_path / "b", spec, shape, "--seed", "7")[1]
    other = run_model(tmp_path / "c", spec, shape, "--seed", "8")[1]
    assert first is not None and second is not None and other is not None
    columns = ["worst_bound_ratio", "mean_min", "std_max"]
    pd.testing.assert_frame_equal(first[columns], second[columns])
    assert not first["mean_min"].equals(other["mean_min"])


def test_the_command_leaves_no_helper_directory_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The implementation's isolation (its helper processes' log directory) is closed when
    the command ends: a session of model runs left a directory in /tmp each."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, table = run_model(tmp_path / "out", "tests.model.tiny:Unknown", "2,3,6,6")
    assert code == 0 and table is not None
    assert list(scratch.glob("conformance-isolation-*")) == []
