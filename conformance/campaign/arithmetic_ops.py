"""The network-arithmetic checks' op names (conformance.campaign.arithmetic), importable
without torch: what --ops selects and the rows' op column."""

ARITHMETIC_OPS = ("parameter_count", "output_shape", "flops", "receptive_field")
