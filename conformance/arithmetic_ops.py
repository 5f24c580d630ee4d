"""The network-arithmetic checks' op names (conformance.arithmetic), importable without torch:
what --ops selects and the rows' op column."""

ARITHMETIC_OPS = ("parameter_count", "output_shape", "flops", "receptive_field")
