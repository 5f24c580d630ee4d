"""Benchmarks, not timed tests: the reference against torch (reference), and the model
command at real size (model)."""
