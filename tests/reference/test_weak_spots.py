"""Bad input never gives a wrong answer: the receptive field of layers it cannot read, the
package's top-level names, and output sizes of 0."""

from __future__ import annotations

import types

import numpy as np
import pytest

import reference
from reference.layers import Conv, ConvTranspose, Linear, Pool


def test_receptive_field_reads_mappings_and_computes_their_field() -> None:
    layers = [dict(kernel_size=3, stride=2, padding=0, dilation=1)] * 4
    fields = [(f.size, f.jump) for (f,) in reference.receptive_field(layers)]
    # R += (k - 1) J, J *= s, by hand: (3, 2), (7, 4), (15, 8), (31, 16)
    assert fields == [(3, 2), (7, 4), (15, 8), (31, 16)]
    described = [(f.size, f.jump) for (f,) in reference.receptive_field([Conv(1, 1, 1, 3, 2)] * 4)]
    assert fields == described


@pytest.mark.parametrize(
    ("layer", "named"),
    [
        ({"kernel": 3, "stride": 2}, "mapping without kernel_size"),
        ({"kernel_size": 3, "strides": 2}, "unknown keys ['strides']"),
        ("conv3x3", "cannot read str"),
        (3, "cannot read int"),
        (ConvTranspose(1, 1, 1, 3, 2), "ConvTranspose has no receptive field"),
        (Linear(4, 4), "Linear has no receptive field"),
    ],
    ids=["no-kernel", "misspelt", "string", "int", "transposed", "linear"],
)
def test_receptive_field_refuses_what_it_cannot_read(layer: object, named: str) -> None:
    with pytest.raises(TypeError, match=r"layers\[1\]") as error:
        reference.receptive_field([Pool("max", 1, 2), layer])
    assert named in str(error.value)


def test_receptive_field_refuses_a_non_sequence() -> None:
    with pytest.raises(TypeError, match="layers must be a sequence"):
        reference.receptive_field(dict(kernel_size=3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dims must be a positive int"):
        reference.receptive_field([Conv(1, 1, 1, 3)], dims=0)


def test_every_public_name_is_the_function_not_its_module() -> None:
    for name in reference.__all__:
        value = getattr(reference, name)
        assert not isinstance(value, types.ModuleType), name
    assert callable(reference.receptive_field)


@pytest.mark.parametrize("op", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_output_size_zero_is_an_empty_result_not_an_error(op: str) -> None:
    out = getattr(reference, op)(np.ones((1, 2, 3, 3)), 0)
    assert out.shape == (1, 2, 0, 0)
