"""The network-arithmetic checks (conformance.campaign.arithmetic), collected with the test
suite."""

from conformance.campaign.arithmetic import (
    test_flops_against_flop_counter,
    test_parameter_count_and_output_shape,
    test_receptive_field_by_gradients,
)

__all__ = [
    "test_flops_against_flop_counter",
    "test_parameter_count_and_output_shape",
    "test_receptive_field_by_gradients",
]
