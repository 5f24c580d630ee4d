"""The capture pass: each catalogue call's arguments as they were when it ran, and the
gradient of the real loss at its output, set against the same quantities computed apart."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from conformance.model import run


def _model(inplace: bool) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 5, 1),
    )


def test_captured_gradient_is_the_losss_even_before_an_in_place_relu() -> None:
    """The in-place ReLU overwrites batch norm's output; the captured input of the last conv
    and the gradient at batch norm's output must still be those of the plain model."""
    shape = (2, 3, 6, 6)
    layers = run.capture(_model(inplace=True), shape, seed=5)
    plain = _model(inplace=False)
    x = run.model_input(plain, shape, seed=5)
    conv_out = plain[0](x)
    norm_out = plain[1](conv_out)
    activated = plain[2](norm_out)
    loss = run.real_loss(5)(plain[3](activated))
    grad_conv, grad_norm, grad_activated = torch.autograd.grad(
        loss, [conv_out, norm_out, activated]
    )
    by_path = {layer.path: layer for layer in layers}
    conv, norm, last = by_path["0"].checks[0], by_path["1"].checks[0], by_path["3"].checks[0]
    np.testing.assert_array_equal(conv.grad_output, grad_conv.numpy())
    np.testing.assert_array_equal(norm.grad_output, grad_norm.numpy())
    np.testing.assert_array_equal(norm.arrays["input"], conv_out.detach().numpy())
    np.testing.assert_array_equal(last.arrays["input"], activated.detach().numpy())
    assert (grad_activated != 0).any()


def test_batch_norm_is_captured_with_its_running_statistics_before_the_update() -> None:
    model = _model(inplace=False)
    before = copy.deepcopy(model[1])
    with torch.no_grad():
        before.running_mean.fill_(0.25)
        model[1].running_mean.fill_(0.25)
    layers = run.capture(model, (2, 3, 6, 6), seed=1)
    norm = layers[1].checks[0]
    assert norm.op == "batch_norm" and norm.config["training"] is True
    assert norm.config["momentum"] == before.momentum and norm.config["eps"] == before.eps
    np.testing.assert_array_equal(norm.arrays["running_mean"], np.full(4, 0.25, np.float32))
    assert not np.allclose(model[1].running_mean.numpy(), 0.25)  # the forward updated it
