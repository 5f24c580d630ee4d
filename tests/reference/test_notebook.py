"""The theory notebook's printed values (sections 1-3), recomputed by the reference.

Expected values are worked out by hand from the notebook's definitions:
section 1: y[i] = x[i] - x[i+2] = -2; section 2: Y[i,j] = X[i,j] - X[i+1,j+1] = -4;
section 3: floor((n + 2p - d(k-1) - 1)/s) + 1.
"""

from __future__ import annotations

import numpy as np

import reference


def test_section_1_cross_correlation_1d() -> None:
    x = np.array([1, 2, 3, 4, 5], dtype=float)
    w = np.array([1, 0, -1], dtype=float)
    y = reference.conv1d(x.reshape(1, 1, 5), w.reshape(1, 1, 3))
    np.testing.assert_array_equal(y.ravel(), [-2.0, -2.0, -2.0])


def test_section_2_cross_correlation_2d() -> None:
    x = np.arange(1, 10, dtype=float).reshape(3, 3)
    k = np.array([[1, 0], [0, -1]], dtype=float)
    y = reference.conv2d(x[np.newaxis, np.newaxis], k[np.newaxis, np.newaxis])
    np.testing.assert_array_equal(y[0, 0], [[-4.0, -4.0], [-4.0, -4.0]])


def test_section_3_output_shape_formula() -> None:
    # The notebook's conv_out(size, kernel, padding, stride, dilation) argument order,
    # mapped onto the torch-style (size, kernel_size, stride, padding, dilation).
    notebook_cases = {(32, 3, 1, 1, 1): 32, (32, 5, 0, 2, 1): 14, (64, 3, 2, 1, 2): 64}
    for (size, kernel, padding, stride, dilation), expected in notebook_cases.items():
        assert reference.conv_output_size(size, kernel, stride, padding, dilation) == expected
        x = np.zeros((1, 1, size))
        w = np.zeros((1, 1, kernel))
        out = reference.conv1d(x, w, stride=stride, padding=padding, dilation=dilation)
        assert out.shape[-1] == expected


def test_section_4_parameter_counts() -> None:
    from reference.layers import Conv, Linear

    # 128 * 64 * 3 * 3 + 128 = 73856; flattening a 224x224x64 map into 128 units:
    # 224 * 224 * 64 * 128 + 128 = 411041920
    conv = Conv(2, 64, 128, 3)
    dense = Linear(224 * 224 * 64, 128)
    assert conv.parameter_count() == 73_856
    assert dense.parameter_count() == 411_041_920
    assert dense.parameter_count() / conv.parameter_count() == 411_041_920 / 73_856


def test_section_6_receptive_field() -> None:
    from reference.layers import Conv
    from reference.receptive_field import receptive_field

    layers = [Conv(1, 1, 1, 3, 1), Conv(1, 1, 1, 3, 2), Conv(1, 1, 1, 3, 1), Conv(1, 1, 1, 3, 2)]
    fields = [(f.size, f.jump) for (f,) in receptive_field(layers)]
    # R += (k - 1) * J, J *= s: (3, 1), (5, 2), (9, 2), (13, 4)
    assert fields == [(3, 1), (5, 2), (9, 2), (13, 4)]


def test_section_7_depthwise_separable_savings() -> None:
    from reference.layers import Conv, depthwise_separable

    standard = Conv(2, 64, 128, 3, bias=False).parameter_count()
    separable = depthwise_separable(2, 64, 128, 3, bias=False).parameter_count()
    # 64 * 128 * 9 = 73728 against 64 * 9 + 64 * 128 = 8768
    assert (standard, separable) == (73_728, 8_768)
    assert standard / separable == 73_728 / 8_768


def test_section_11_patch_embedding() -> None:
    from reference.layers import patch_embedding

    layer = patch_embedding(3, 768, 16)
    _, dim, rows, cols = layer.output_shape((1, 3, 224, 224))
    # (224 // 16) ** 2 = 196 patches; 16 * 16 * 3 * 768 + 768 = 590592 parameters
    assert (dim, rows * cols) == (768, 196)
    assert layer.parameter_count() == 590_592
