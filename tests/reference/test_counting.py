"""Layer arithmetic against brute force: multiply-adds counted by walking every product."""

from __future__ import annotations

import itertools

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reference.layers import Conv, ConvTranspose


def count_conv_products(n: int, k: int, s: int, p: int, d: int) -> int:
    """Products w[t] * x_pad[q*s + t*d] per channel pair, padded zeros included."""
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    return sum(1 for q in range(out) for t in range(k))


def count_transposed_products(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """Products x[i] * w[t] whose result i*s + t*d - p lands inside the output."""
    out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    return sum(1 for i, t in itertools.product(range(n), range(k)) if 0 <= i * s + t * d - p < out)


@settings(max_examples=100)
@given(
    n=st.integers(1, 9),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    channels=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
)
def test_conv_macs_match_a_product_walk(
    n: int, k: int, s: int, p: int, d: int, channels: int, groups: int
) -> None:
    assume(n + 2 * p >= d * (k - 1) + 1)
    layer = Conv(1, channels * groups, 2 * groups, k, s, p, d, groups)
    walked = count_conv_products(n, k, s, p, d) * 2 * groups * channels
    assert layer.macs((3, channels * groups, n)) == 3 * walked


@settings(max_examples=100)
@given(
    n=st.integers(1, 6),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 3),
    d=st.integers(1, 2),
    extra=st.integers(0, 2),
)
def test_conv_transpose_macs_match_a_product_walk(
    n: int, k: int, s: int, p: int, d: int, extra: int
) -> None:
    op = extra % max(s, d)
    assume((n - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
    layer = ConvTranspose(1, 2, 3, k, s, p, op, 1, True, d)
    assert layer.macs((2, 2, n)) == 2 * 2 * 3 * count_transposed_products(n, k, s, p, op, d)


@settings(max_examples=50)
@given(
    n=st.integers(1, 6),
    k=st.integers(1, 3),
    groups=st.integers(1, 3),
    per_group_in=st.integers(1, 2),
    per_group_out=st.integers(1, 2),
    batch=st.integers(1, 2),
)
def test_grouped_grad_weight_products_match_a_walk(
    n: int, k: int, groups: int, per_group_in: int, per_group_out: int, batch: int
) -> None:
    """grad_weight[o, c, t] = sum over (b, q) of g[b, o, q] * x[b, group(o)*Cg + c, q + t]:
    walk every product; FLOPs are twice that, equal to the forward count."""
    assume(n >= k)
    out = n - k + 1
    walked = sum(
        1
        for o in range(groups * per_group_out)
        for c in range(per_group_in)
        for t in range(k)
        for b in range(batch)
        for q in range(out)
    )
    layer = Conv(1, groups * per_group_in, groups * per_group_out, k, groups=groups)
    flops = layer.flops((batch, groups * per_group_in, n))
    assert flops["grad_weight"] == 2 * walked == flops["forward"]
