"""How one example is judged: the error model and the bounds, the check that runs the oracle,
the implementation and the measurement, invalid calls, and the repro of a failure."""
