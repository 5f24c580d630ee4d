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


def test_the_flops_check_leaves_out_the_max_pool_windows_torch_corrupts_memory_on() -> None:
    """The layer that aborted the flops check (seed 4, thorough: 'free(): invalid next size'):
    every window of this 3-d max pool on a 1x1x1 input has its taps at -1 and 1; a
    neighbouring input of 3x3x3, and the same pool without dilation, have none empty."""
    from conformance.campaign.arithmetic import empty_max_window
    from reference import layers

    killer = layers.Pool("max", 3, 2, None, 1, 2, False)
    assert empty_max_window(killer, (2, 2, 1, 1, 1))
    assert not empty_max_window(killer, (2, 2, 3, 3, 3))
    assert not empty_max_window(layers.Pool("max", 3, 2, None, 1, 1, False), (2, 2, 1, 1, 1))
    assert not empty_max_window(layers.Pool("avg", 3, 2, None, 1, 1, False), (2, 2, 1, 1, 1))
