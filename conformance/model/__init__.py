"""python -m conformance model: the notebook's section-13 checklist run on a whole network.

A factory (``package.module:callable``) builds a ``torch.nn.Module``; one forward and backward
pass on a seeded batch captures every layer's real input, parameters and upstream gradient.
Each layer is then described (shapes, parameters, multiply-adds and FLOPs beside torch's
FlopCounterMode, receptive field and jump, activation statistics, the depthwise-separable
and 1x1 alternatives of each standard convolution) and, where the catalogue knows its op,
checked through the implementation under test against the float64 oracle with the
campaign's own bounds (conformance.judge.check.run_example). The report names the first layer that
fails, with a repro of that layer alone.

Modules: zoo and zoo_dense (the shipped factories), trace (a watched forward pass),
fields and propagation (the closed-form receptive fields, and which call moves them how),
probe (the controlled-input probe that checks them), counts (shapes, parameters, FLOPs, the
alternatives), checks (the conformance checks), replay (the repro of one layer), run (the
whole checklist into one table), report and html (the report files), command (the CLI
entry) and bench (the benchmark).
"""
