"""How the judging runs under pytest and Hypothesis: the plugin, the generated tests, the
network-arithmetic checks, the batches judged in the implementation's helper, the
recorder, timing and the profiles."""
