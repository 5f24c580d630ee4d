"""The catalogue's op names and the dtypes, importable in a blink (no Hypothesis, no
families): what the CLI checks its arguments against before anything heavy loads.
tests/harness/test_cli.py states that they are the catalogue's own."""

from __future__ import annotations

OPS = (
    "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "unfold", "fold",
    "batch_norm", "channel_statistics",
    "patch_embedding", "depthwise_separable_conv", "residual_block", "conv_bn_relu",
    "conv_max_pool", "conv_transpose_conv",
)  # fmt: skip
DTYPES = ("float64", "float32", "float16", "bfloat16")
