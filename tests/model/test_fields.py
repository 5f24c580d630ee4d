"""The closed-form receptive fields of conformance.model against the reference's own closed
form and against the probe on the real layers, and the probe against a wrong field."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import reference
from conformance.model import fields, probe, run
from conformance.model.trace import Layer
from tests.model import tiny


def traced(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[Layer], list[Layer], list]:
    layers = run.capture(model, shape, seed=0)
    probed, points = probe.run_probe(model, shape)
    return layers, probed, points


STACK = (  # (torch module, the reference's description of it)
    (nn.Conv2d(1, 2, 7, 2, 3), reference.Conv(2, 1, 2, 7, 2, 3)),
    (nn.MaxPool2d(3, 2, 1), reference.Pool("max", 2, 3, 2, 1)),
    (nn.Conv2d(2, 2, 3, 1, 2, dilation=2), reference.Conv(2, 2, 2, 3, 1, 2, 2)),
    (nn.AvgPool2d(2), reference.Pool("avg", 2, 2)),
    (nn.Conv2d(2, 2, (3, 5), (1, 2), (0, 1)), reference.Conv(2, 2, 2, (3, 5), (1, 2), (0, 1))),
)


def test_textbook_form_equals_the_references_closed_form_layer_by_layer() -> None:
    model = nn.Sequential(*(module for module, _ in STACK))
    layers, _, _ = traced(model, (1, 1, 61, 61))
    expected = reference.receptive_field([description for _, description in STACK], dims=2)
    assert len(layers) == len(expected)
    for layer, want in zip(layers, expected, strict=True):
        assert layer.field is not None and layer.field.textbook is not None
        got = [(t.size, t.jump, t.start) for t in layer.field.textbook]
        assert got == [(Fraction(f.size), Fraction(f.jump), Fraction(f.start)) for f in want]


def test_every_field_rule_matches_the_probe() -> None:
    layers, probed, points = traced(tiny.Tricky(), (1, 2, 14, 14))
    kinds = [layer.kind for layer in layers]
    assert kinds == ["Conv2d", "Conv2d", "MaxPool2d", "ConvTranspose2d", "add", "cat",
                     "Upsample", "AdaptiveAvgPool2d"]  # fmt: skip
    for layer, seen in zip(layers, probed, strict=True):
        verdict, disagrees = probe.verdict(layer, seen, points)
        assert verdict.startswith("match") and not disagrees, (layer.path, verdict)


def test_dilation_on_the_input_leaves_holes_in_the_field() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=3, dilation=3))
    layers, probed, points = traced(model, (1, 1, 10, 10))
    rows = layers[0].field.boxes[0][0]  # (output position, input position), first axis
    assert np.flatnonzero(rows[5]).tolist() == [2, 5, 8]
    assert np.flatnonzero(rows[0]).tolist() == [0, 3]  # clipped: -3 is in the padding
    assert probe.verdict(layers[0], probed[0], points)[0].startswith("match")


def test_a_residual_union_is_a_union_of_boxes_not_the_box_around_it() -> None:
    layers, probed, points = traced(tiny.Cross(), (1, 1, 9, 9))
    summed = layers[-1]
    assert summed.kind == "add" and len(summed.field.boxes) == 2
    verdict, disagrees = probe.verdict(summed, probed[-1], points)
    assert verdict.startswith("match") and not disagrees
    # the box around the cross (per-axis unions) claims the corners too: the probe says no
    box = summed.field.boxes
    around = tuple(a | b for a, b in zip(box[0], box[1], strict=True))
    wrong = replace(summed, field=replace(summed.field, boxes=(around,)))
    verdict, disagrees = probe.verdict(wrong, probed[-1], points)
    assert disagrees and "do not respond" in verdict


def test_the_probe_catches_a_field_one_layer_behind() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))
    layers, probed, points = traced(model, (1, 1, 12, 12))
    stale = replace(layers[1], field=layers[0].field)
    verdict, disagrees = probe.verdict(stale, probed[1], points)
    assert disagrees and "outside the field" in verdict


def test_resnet_fields_after_the_stem_and_the_last_stage() -> None:
    """ResNet-18's textbook fields: the 7x7/2 stem 7 (jump 2), after the 3x3/2 max pool 11
    (jump 4), and 435 (jump 32) after the last stage (each 3x3 adds 2 x jump)."""
    from conformance.model import zoo

    layers, probed, points = traced(zoo.resnet18(), (1, 3, 64, 64))
    by_path = {layer.path: layer for layer in layers}
    assert fields.describe(by_path["conv1"].field)[:2] == ("7", "2")
    assert fields.describe(by_path["maxpool"].field)[:2] == ("11", "4")
    assert fields.describe(by_path["layer4.1.relu2"].field)[:2] == ("435", "32")
    mismatches = [
        layer.path
        for layer, seen in zip(layers, probed, strict=True)
        if probe.verdict(layer, seen, points)[1]
    ]
    assert mismatches == []


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_padding_modes_copy_the_right_positions(mode: str) -> None:
    class Padded(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.pad(x, (2, 1, 1, 2), mode=mode)

    layers, probed, points = traced(Padded(), (1, 1, 6, 7))
    assert probe.verdict(layers[0], probed[0], points)[0].startswith("match")
