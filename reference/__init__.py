"""The oracle: independent NumPy implementations of convolutional-network math.

Mirrors torch.nn.functional (same names, argument names, order and defaults) but never imports
torch. Backward companions are ``<op>_backward`` and return the gradients of the
differentiable inputs as a tuple, in argument order.
"""

from reference.conv import (
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
)
from reference.conv_transpose import (
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
)
from reference.gradcheck import check_gradients, numerical_gradient
from reference.shapes import conv_output_size, conv_transpose_output_size, same_padding

__all__ = [
    "check_gradients",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_output_size",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "conv_transpose_output_size",
    "numerical_gradient",
    "same_padding",
]
