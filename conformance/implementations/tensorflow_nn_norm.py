"""torch's batch normalization, channel statistics and residual block with TensorFlow, and
the four directions (forward, GradientTape backward, ForwardAccumulator jvp, nested-tape
double backward) the adapter and its repro snippets both run.

Same conventions as tensorflow_nn_conv. This module imports only numpy, tensorflow and the
adapter's other TensorFlow modules, so that a repro snippet can carry a function's source
verbatim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from conformance.implementations.tensorflow_nn_conv import (
    Inexpressible,
    channels_first,
    channels_last,
    conv,
)

FUSED_FORMATS = {4: "NHWC", 5: "NDHWC"}


def batch_norm(
    input: tf.Tensor,
    running_mean: tf.Tensor | None,
    running_var: tf.Tensor | None,
    weight: tf.Tensor | None = None,
    bias: tf.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """F.batch_norm: (output, new running_mean, new running_var).

    float32, float16, bfloat16: tf.compat.v1.nn.fused_batch_norm (FusedBatchNormV3, what
    Keras runs), channels-last, (N, C) and (N, C, L) as (N, 1, 1, C) and (N, 1, L, C). It
    normalizes with the biased batch variance and moves the running statistics by
    exponential_avg_factor = momentum toward the mean and the Bessel-corrected variance:
    torch's rule exactly. Its scale, offset and statistics are float32 for half inputs
    (exact casts in; the new running statistics rounded once to the dtype on the way out).
    float64, which FusedBatchNormV3 has no kernel for: tf.nn.moments and
    tf.nn.batch_normalization, with torch's update written out."""
    rank = len(input.shape)
    x = channels_last(input)  # (N, *spatial, C)
    channels = x.shape[-1]
    if input.dtype == tf.float64:
        return _composed_batch_norm(
            x, running_mean, running_var, weight, bias, training, momentum, eps
        )
    stats = tf.float32

    def given(array: tf.Tensor | None, fill: float) -> tf.Tensor:
        return (
            tf.fill([channels], tf.constant(fill, stats))
            if array is None
            else tf.cast(array, stats)
        )

    shape = x.shape
    if rank < 4:
        x = tf.reshape(x, [shape[0], *([1] * (4 - rank)), *shape[1:]])
    out, new_mean, new_var = tf.compat.v1.nn.fused_batch_norm(
        x,
        given(weight, 1.0),
        given(bias, 0.0),
        given(running_mean, 0.0),
        given(running_var, 1.0),
        epsilon=eps,
        data_format=FUSED_FORMATS[len(x.shape)],
        is_training=training,
        exponential_avg_factor=momentum if training else 1.0,
    )
    out = channels_first(tf.reshape(out, shape))
    if not training:
        return out, running_mean, running_var
    return (
        out,
        None if running_mean is None else tf.cast(new_mean, input.dtype),
        None if running_var is None else tf.cast(new_var, input.dtype),
    )


def _composed_batch_norm(
    x: tf.Tensor,
    running_mean: tf.Tensor | None,
    running_var: tf.Tensor | None,
    weight: tf.Tensor | None,
    bias: tf.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """float64 batch norm: tf.nn.moments over every axis but the channels', then
    tf.nn.batch_normalization; running statistics by torch's rule (unbiased variance)."""
    axes = list(range(len(x.shape) - 1))
    new_mean, new_var = running_mean, running_var
    if training:
        mean, var = tf.nn.moments(x, axes)
        count = x.shape.num_elements() // x.shape[-1]
        if running_mean is not None:
            new_mean = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            new_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)
    else:
        mean, var = running_mean, running_var
    out = tf.nn.batch_normalization(x, mean, var, bias, weight, eps)
    return channels_first(out), new_mean, new_var


def channel_statistics(input: tf.Tensor, correction: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """torch.var_mean over every axis but the channels': tf.nn.moments, biased only."""
    if correction != 0:
        raise Inexpressible(
            "correction != 0: tf.nn.moments (and tf.math.reduce_variance) give the biased "
            "variance only"
        )
    mean, var = tf.nn.moments(input, [0, *range(2, len(input.shape))])
    return var, mean


def residual_block(
    input: tf.Tensor,
    conv1_weight: tf.Tensor,
    bn1_weight: tf.Tensor,
    bn1_bias: tf.Tensor,
    conv2_weight: tf.Tensor,
    bn2_weight: tf.Tensor,
    bn2_bias: tf.Tensor,
    shortcut_weight: tf.Tensor | None = None,
    shortcut_bn_weight: tf.Tensor | None = None,
    shortcut_bn_bias: tf.Tensor | None = None,
    stride: int = 1,
    eps: float = 1e-5,
) -> tf.Tensor:
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), batch statistics (training)."""

    def norm(x: tf.Tensor, weight: tf.Tensor | None, bias: tf.Tensor | None) -> tf.Tensor:
        return batch_norm(x, None, None, weight, bias, True, 0.0, eps)[0]

    hidden = tf.nn.relu(norm(conv(input, conv1_weight, None, stride, 1), bn1_weight, bn1_bias))
    body = norm(conv(hidden, conv2_weight, None, 1, 1), bn2_weight, bn2_bias)
    skip = input
    if shortcut_weight is not None:
        skip = norm(
            conv(input, shortcut_weight, None, stride), shortcut_bn_weight, shortcut_bn_bias
        )
    return tf.nn.relu(body + skip)


# -- the directions ----------------------------------------------------------------------


def first_output(out: Any) -> tf.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def run_backward(
    function: Callable[..., Any],
    grad_output: tf.Tensor,
    arrays: Sequence[tf.Tensor | None],
    wanted: Sequence[bool],
) -> list[tf.Tensor | None]:
    """The gradients of the differentiable arrays (None where absent): one GradientTape,
    tape.gradient of the first output with grad_output, zeros where it does not reach."""
    watched = [a for a, w in zip(arrays, wanted, strict=True) if w and a is not None]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        out = first_output(function(*arrays))
    grads = iter(
        tape.gradient(
            out,
            watched,
            output_gradients=grad_output,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
    )
    return [None if a is None else next(grads) for a, w in zip(arrays, wanted, strict=True) if w]


def run_jvp(
    function: Callable[..., Any],
    tangents: Sequence[tf.Tensor | None],
    arrays: Sequence[tf.Tensor | None],
    wanted: Sequence[bool],
) -> tf.Tensor:
    """The first output's forward-mode derivative: tf.autodiff.ForwardAccumulator with each
    present differentiable array and its tangent."""
    primals, directions = [], []
    tangent_of = iter(tangents)
    for array, differentiable in zip(arrays, wanted, strict=True):
        tangent = next(tangent_of) if differentiable else None
        if array is not None and tangent is not None:
            primals.append(array)
            directions.append(tangent)
    with tf.autodiff.ForwardAccumulator(primals, directions) as accumulator:
        out = first_output(function(*arrays))
    return accumulator.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def run_double_backward(
    function: Callable[..., Any],
    grad_output: tf.Tensor,
    grad_grads: Sequence[tf.Tensor | None],
    arrays: Sequence[tf.Tensor | None],
    wanted: Sequence[bool],
) -> list[tf.Tensor | None]:
    """Nested GradientTapes: the inner one's gradients (with grad_output), then the outer
    one's gradient of them against grad_grads, with respect to the present differentiable
    arrays and grad_output (grad_output's last)."""
    chosen = [a for a, w in zip(arrays, wanted, strict=True) if w]
    watched = [a for a in chosen if a is not None]
    with tf.GradientTape() as outer:
        outer.watch([*watched, grad_output])
        with tf.GradientTape() as inner:
            inner.watch(watched)
            out = first_output(function(*arrays))
        first = inner.gradient(
            out,
            watched,
            output_gradients=grad_output,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
    cotangents = [v for v, a in zip(grad_grads, chosen, strict=True) if a is not None]
    second = outer.gradient(
        first,
        [*watched, grad_output],
        output_gradients=cotangents,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    results = iter(second[:-1])
    return [*(None if a is None else next(results) for a in chosen), second[-1]]
