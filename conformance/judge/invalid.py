"""Invalid calls: a valid example broken by one rule, for every catalogue op.

Both the implementation under test and the reference are called with it. Both must reject
it; the reference with a ValueError or TypeError whose message names the argument. A row
says which rejected: both, only the implementation, only the reference, or neither (the rule
is not a rule of either). A one-sided rejection is a disagreement; which side is right is
decided by a brute-force case and the documentation, never presumed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from conformance.catalogue.dtypes import numpy_dtype
from conformance.catalogue.example import Example
from conformance.catalogue.spec import OpSpec
from conformance.catalogue.strategies.knobs import Knobs
from conformance.implementations import Unsupported
from conformance.implementations.calls import Call, ProcessDied, error_name

Arrays = dict[str, np.ndarray | None]
Config = dict[str, Any]
Breaker = Callable[[Arrays, Config, OpSpec], None]


@dataclass(frozen=True)
class Rule:
    """One way to break a call: its name, the argument the error must name, and the edit."""

    name: str
    argument: str  # the error must name it (or one of ``also``)
    applies: Callable[[OpSpec, Example], bool]
    breaks: Breaker
    also: tuple[str, ...] = ()


def _set_first(key: str, value: Any) -> Breaker:
    """config[key] with its first entry (or the scalar) replaced by value."""

    def breaks(arrays: Arrays, config: Config, spec: OpSpec) -> None:
        current = config.get(key)
        if isinstance(current, (tuple, list)):
            config[key] = (value, *current[1:])
        else:
            config[key] = value

    return breaks


def _has(key: str) -> Callable[[OpSpec, Example], bool]:
    return lambda spec, example: key in example.config


def _int_knob(key: str) -> Callable[[OpSpec, Example], bool]:
    """A knob given as numbers (not 'same'/'valid'), so a number can replace it."""
    return lambda spec, example: key in example.config and not isinstance(example.config[key], str)


def _is_conv(spec: OpSpec) -> bool:
    return spec.name.startswith("conv") and "transpose" not in spec.name


def _transposed(spec: OpSpec) -> bool:
    return spec.name.startswith("conv_transpose")


def _extra_axes_invalid(spec: OpSpec, example: Example) -> bool:
    if spec.name == "batch_norm":
        x = example.arrays["input"]
        per_channel = ("running_mean", "running_var", "weight", "bias")
        return (
            x is not None
            and x.shape[1] != 1
            and any(example.arrays.get(name) is not None for name in per_channel)
        )
    return True


def _extra_axis(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    x = arrays["input"]
    assert x is not None
    arrays["input"] = x.reshape(1, 1, *x.shape)


def _weight_channels(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    weight = arrays["weight"]
    assert weight is not None
    grown = np.zeros((weight.shape[0], weight.shape[1] + 1, *weight.shape[2:]))
    arrays["weight"] = grown


def _bias_length(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    """One more entry than the output channels (a transposed weight holds them per group)."""
    weight = arrays["weight"]
    assert weight is not None
    transposed = "output_padding" in config
    channels = weight.shape[1] * config["groups"] if transposed else weight.shape[0]
    arrays["bias"] = np.zeros(channels + 1)


def _groups_not_dividing(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    x = arrays["input"]
    assert x is not None
    channels = x.shape[1] if x.ndim == arrays["weight"].ndim else x.shape[0]  # type: ignore[union-attr]
    config["groups"] = channels + 1


def _same_strided(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    config["padding"] = "same"
    config["stride"] = 2


def _output_padding_too_large(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    stride, dilation = config["stride"], config["dilation"]
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    _set_first("output_padding", max(first(stride), first(dilation)))(arrays, config, spec)


def _spatial_sizes(arrays: Arrays, spec: OpSpec) -> tuple[int, ...]:
    x = arrays["input"]
    assert x is not None
    dims = int(spec.name[-2]) if spec.name[-2].isdigit() else 2  # unfold: 2-d images
    return tuple(x.shape[-dims:])


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) else value


def _invalid_kernel(arrays: Arrays, config: Config, spec: OpSpec) -> int | None:
    """The smallest kernel (on the first axis) with no output position at all, next to the
    largest with one: torch's output-size formula, ceil_mode's extra window and its rule that
    the last window start inside the input or the left padding included. None where every
    kernel has a window: with ceil_mode, dilation 1 and the default stride (= kernel) the
    first window always starts inside the input, so no kernel is too large."""
    if spec.name == "fold":  # its kernel must also match its input's channels: no boundary
        return 64
    size = _spatial_sizes(arrays, spec)[0]
    pad = _first(config.get("padding", 0)) if not spec.name.startswith("lp_pool") else 0
    dilation = _first(config.get("dilation", 1))
    ceil = bool(config.get("ceil_mode", False))
    stride = config.get("stride")
    for kernel in range(1, 4096):
        step = kernel if stride is None or stride == () else _first(stride)
        span = size + 2 * pad - dilation * (kernel - 1) - 1
        out = (span + (step - 1 if ceil else 0)) // step + 1
        if ceil and (out - 1) * step >= size + pad:
            out -= 1
        if out < 1 and 2 * pad <= kernel:
            return kernel
    return None


def _has_invalid_kernel(spec: OpSpec, example: Example) -> bool:
    return "kernel_size" in example.config and (
        _invalid_kernel(dict(example.arrays), dict(example.config), spec) is not None
    )


def _kernel_over_input(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    kernel = _invalid_kernel(arrays, config, spec)
    assert kernel is not None, "the rule applies only where a kernel is too large"
    _set_first("kernel_size", kernel)(arrays, config, spec)


def _padding_mode_boundary(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    """The first padding the mode cannot give, on the first axis. Numeric padding (under
    reflect, or circular where the example has it): reflect needs padding smaller than the
    input (pad == size is the first invalid), circular at most the input (pad == size + 1).
    'same' or 'valid' padding with a kernel that pads: 'same' and the input cut to the end
    pad's limit (see _same_pad_boundary), where only the larger of the two pads is past it."""
    if isinstance(config.get("padding"), str) and _same_pad_ends(arrays, config)[1] >= 1:
        _same_pad_boundary(arrays, config, spec)
        return
    if config.get("padding_mode") != "circular":
        config["padding_mode"] = "reflect"
    size = _spatial_sizes(arrays, spec)[0]
    extra = 1 if config["padding_mode"] == "circular" else 0
    _set_first("padding", size + extra)(arrays, config, spec)


def _same_pad_ends(arrays: Arrays, config: Config) -> tuple[int, int]:
    """'same' padding's two ends on the first spatial axis: the odd element goes at the end."""
    weight = arrays["weight"]
    assert weight is not None
    total = _first(config.get("dilation", 1)) * (weight.shape[2] - 1)
    return total // 2, total - total // 2


def _resized_axis(arrays: Arrays, spec: OpSpec, axis: int, size: int) -> None:
    """The input with spatial axis ``axis`` cut or zero-extended to ``size`` elements."""
    x = arrays["input"]
    assert x is not None
    dims = len(_spatial_sizes(arrays, spec))
    where = x.ndim - dims + axis
    shape = list(x.shape)
    shape[where] = size
    grown = np.zeros(shape, dtype=x.dtype)
    keep = min(size, x.shape[where])
    index = (slice(None),) * where + (slice(0, keep),)
    grown[index] = x[index]
    arrays["input"] = grown


def _same_pad_boundary(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    """'same' (stride 1) with reflect or circular padding and the first input size the mode
    cannot pad at the end, the larger pad: reflect size == pad, circular size == pad - 1.
    With an even effective kernel the start pad is one smaller and still fits, so only a
    check of the larger end rejects it. Circular needs an end pad of 2 (a size of 1)."""
    end = _same_pad_ends(arrays, config)[1]
    circular = config.get("padding_mode") == "circular" and end >= 2
    config.update(padding="same", stride=1, padding_mode="circular" if circular else "reflect")
    _resized_axis(arrays, spec, 0, end - 1 if circular else end)


def _single_value_per_channel(spec: OpSpec, example: Example) -> bool:
    return spec.name == "batch_norm" and bool(example.config.get("training"))


def _one_value_per_channel(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    """Batch 1 and every spatial axis 1: training has one value per channel, no variance."""
    x = arrays["input"]
    assert x is not None
    arrays["input"] = x[(slice(0, 1), slice(None)) + (slice(0, 1),) * (x.ndim - 2)].copy()


def _patch_fits(spec: OpSpec, example: Example) -> bool:
    weight = example.arrays.get("weight")
    return spec.name == "patch_embedding" and weight is not None and weight.shape[-1] >= 2


def _under_one_patch(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    """Rows one short of a patch, columns untouched: no patch on one axis only."""
    x, weight = arrays["input"], arrays["weight"]
    assert x is not None and weight is not None
    rows = x.ndim - 2
    shape = list(x.shape)
    shape[rows] = weight.shape[-1] - 1
    arrays["input"] = x[tuple(slice(0, n) for n in shape)].copy()


def _empty_axis(axis: int) -> Breaker:
    """The input with spatial axis ``axis`` empty (size 0)."""

    def breaks(arrays: Arrays, config: Config, spec: OpSpec) -> None:
        _resized_axis(arrays, spec, axis, 0)

    return breaks


def _spatial_axis(axis: int) -> Callable[[OpSpec, Example], bool]:
    def applies(spec: OpSpec, example: Example) -> bool:
        digits = [c for c in spec.name if c.isdigit()]
        dims = int(digits[-1]) if digits else (2 if spec.name == "unfold" else 0)
        return axis < dims and "input" in example.arrays

    return applies


def _padding_over_half(prefix: str = "") -> Breaker:
    """The pooling's padding (``prefix`` + padding) past half its kernel in the first axis."""

    def breaks(arrays: Arrays, config: Config, spec: OpSpec) -> None:
        kernel = config.get(f"{prefix}kernel_size", 2)  # conv_max_pool's default is 2
        first = kernel[0] if isinstance(kernel, (tuple, list)) else kernel
        _set_first(f"{prefix}padding", first // 2 + 1)(arrays, config, spec)

    return breaks


def _running_mean_length(arrays: Arrays, config: Config, spec: OpSpec) -> None:
    mean = arrays["running_mean"]
    assert mean is not None
    arrays["running_mean"] = np.zeros(mean.shape[0] + 1)


def _batch_norm_stats(spec: OpSpec, example: Example) -> bool:
    return spec.name == "batch_norm" and example.arrays.get("running_mean") is not None


def _not_pool_lp(spec: OpSpec, example: Example) -> bool:
    names = "pool" in spec.name and not spec.name.startswith(("lp_", "adaptive"))
    return names and "kernel_size" in example.config  # conv_max_pool's is pool_kernel_size


def _chain_pool(spec: OpSpec, example: Example) -> bool:
    return spec.name == "conv_max_pool"


RULES = (
    Rule("stride 0", "stride", lambda s, e: e.config.get("stride") is not None
         and not isinstance(e.config.get("stride"), str), _set_first("stride", 0)),
    Rule("negative stride", "stride", lambda s, e: e.config.get("stride") is not None,
         _set_first("stride", -1)),
    Rule("kernel_size 0", "kernel_size", _has("kernel_size"), _set_first("kernel_size", 0)),
    Rule("dilation 0", "dilation", _int_knob("dilation"), _set_first("dilation", 0)),
    Rule("negative padding", "padding", _int_knob("padding"), _set_first("padding", -1)),
    Rule("pool padding over half the kernel", "padding", _not_pool_lp, _padding_over_half()),
    Rule("pool_kernel_size 0", "pool_kernel_size", _chain_pool, _set_first("pool_kernel_size", 0)),
    Rule("pool_padding over half the pool kernel", "pool_padding", _chain_pool,
         _padding_over_half("pool_")),
    Rule("groups not dividing the channels", "groups",
         lambda s, e: "groups" in e.config and (_is_conv(s) or _transposed(s)),
         _groups_not_dividing),
    Rule("kernel larger than the padded input", "kernel_size", _has_invalid_kernel,
         _kernel_over_input),
    Rule("output_padding >= stride and dilation", "output_padding",
         lambda s, e: _transposed(s), _output_padding_too_large),
    Rule("'same' with stride > 1", "padding", lambda s, e: _is_conv(s), _same_strided),
    Rule("padding past what the padding mode can give", "padding", lambda s, e: _is_conv(s),
         _padding_mode_boundary, also=("input",)),
    *(Rule(f"empty spatial axis {axis}", "input", _spatial_axis(axis), _empty_axis(axis))
      for axis in range(3)),
    # batch_norm takes (N, C, *) of any rank: two leading axes move its channels to an axis
    # of size 1, invalid only where a per-channel array has more entries
    Rule("input with two extra axes", "input", _extra_axes_invalid, _extra_axis,
         also=("running_mean", "running_var", "weight", "bias")),
    Rule("weight channels mismatch", "weight",
         lambda s, e: _is_conv(s) or s.name == "patch_embedding", _weight_channels),
    Rule("bias of the wrong length", "bias",
         lambda s, e: "bias" in s.array_args and (_is_conv(s) or _transposed(s)
                                                   or s.name == "patch_embedding"),
         _bias_length),
    # output_size 0 is valid (torch and the reference both return an empty tensor)
    Rule("negative output_size", "output_size", lambda s, e: s.name.startswith("adaptive"),
         _set_first("output_size", -1)),
    Rule("running_mean of the wrong length", "running_mean", _batch_norm_stats,
         _running_mean_length),
    Rule("training with one value per channel", "input", _single_value_per_channel,
         _one_value_per_channel),
    Rule("input smaller than the patch on one axis", "input", _patch_fits, _under_one_patch),
    Rule("negative eps", "eps", lambda s, e: "eps" in e.config, _set_first("eps", -1.0)),
    Rule("norm_type 0", "norm_type", _has("norm_type"), _set_first("norm_type", 0.0)),
)  # fmt: skip


# ops with no invalid call: what the reference rejects, torch's composition accepts
NO_INVALID_CALLS = {
    "channel_statistics": "torch.var_mean takes any rank and any correction: no argument "
    "value that torch rejects",
}


def rules_for(spec: OpSpec, example: Example) -> list[Rule]:
    return [rule for rule in RULES if rule.applies(spec, example)]


def broken(rule: Rule, example: Example, spec: OpSpec) -> tuple[Arrays, Config]:
    arrays: Arrays = {k: None if a is None else a.copy() for k, a in example.arrays.items()}
    config: Config = dict(example.config)
    rule.breaks(arrays, config, spec)
    return arrays, config


@st.composite
def _invalid_call(
    draw: st.DrawFn, spec: OpSpec, examples: st.SearchStrategy[Example]
) -> tuple[Example, Rule]:
    # the rule's knob comes first, from the same bytes as the example's (one choice)
    knobs = Knobs(draw)
    pick = knobs.integer(0, 255)
    example = knobs.nested(examples)
    rules = rules_for(spec, example)
    assume(rules)
    return example, rules[pick * len(rules) >> 8]


def invalid_calls(spec: OpSpec) -> st.SearchStrategy[tuple[Example, Rule]]:
    """A valid example of the op and one rule that applies to it (an example that no rule
    applies to is rejected). The op's example strategy is built here, once: building one
    (Hypothesis reads a composite's source to check its signature) cost more than drawing
    from it, and shrinking a failing invalid call draws thousands (40 of a 53 s run)."""
    return _invalid_call(spec, spec.examples())


def _outcome(call: Callable[[], Any]) -> BaseException | None:
    """What the call raised (None: it returned). A call that killed its process or never
    returned is not a rejection: ProcessDied goes on to the caller."""
    try:
        with np.errstate(all="ignore"):
            call()
    except ProcessDied:
        raise
    except Exception as error:
        return error
    return None


VERDICTS = {
    (True, True): "both rejected",
    (True, False): "only the implementation rejected",
    (False, True): "only the reference rejected",
    (False, False): "neither rejected",
}


def invalid_call_dtype(
    spec: OpSpec, implementation: Any, selected: tuple[str, ...] | None = None
) -> str | None:
    """The dtype an invalid call is made in: the first of the op's dtypes (float64 first)
    that the run selected and the implementation runs; None when there is none (the call is
    then not made)."""
    from conformance.implementations import supports

    wanted = [d for d in spec.dtypes if selected is None or d in selected]
    return next((d for d in wanted if supports(implementation, spec.name, d)), None)


def check_invalid(
    spec: OpSpec, implementation: Any, example: Example, rule: Rule, dtype: str = "float64"
) -> dict[str, Any]:
    """Call both with the broken example; the row that says who rejected it and how. The
    implementation gets the arrays in ``dtype`` (one it runs), the reference in float64."""
    arrays, config = broken(rule, example, spec)
    stored = numpy_dtype(dtype)
    theirs_arrays = [None if a is None else a.astype(stored) for a in arrays.values()]
    theirs = _outcome(lambda: getattr(implementation, spec.name)(*theirs_arrays, **config))
    ours = _outcome(lambda: spec.reference(*arrays.values(), **config))
    clean = isinstance(ours, (ValueError, TypeError))
    named = clean and any(name in str(ours) for name in (rule.argument, *rule.also))
    verdict = VERDICTS[(theirs is not None, ours is not None)]
    if isinstance(theirs, Unsupported):  # the adapter cannot express the call at all
        verdict = "unsupported by the implementation"
    return {
        "op": spec.name,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": "invalid call",
        "rule": rule.name,
        "argument": rule.argument,
        "example_key": f"{rule.name}: {example.key()}",
        "example": f"{rule.name}: "
        + ", ".join(f"{k} {a.shape}" for k, a in arrays.items() if a is not None)
        + f"; {config!r}",
        "config": repr(config),
        "shapes": repr({k: None if a is None else a.shape for k, a in arrays.items()}),
        "error_verdict": verdict,
        "implementation_error": "" if theirs is None else f"{error_name(theirs)}: {theirs}",
        "reference_error": "" if ours is None else f"{type(ours).__name__}: {ours}",
        "reference_error_names_argument": bool(named) if ours is not None else None,
        "normalized_error": np.nan,
        "bound_ratio": np.nan,
    }


def judge(row: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, problem): agreement passes; a rejection by one side alone, or a reference
    error that is not a ValueError/TypeError naming the argument, fails."""
    verdict = row["error_verdict"]
    if verdict == "unsupported by the implementation":
        return "unsupported", row["implementation_error"]
    if verdict == "only the implementation rejected":
        return "fail", (
            f"the implementation rejects it ({row['implementation_error']}); the reference "
            "accepts it"
        )
    if verdict == "only the reference rejected":
        return "fail", (
            f"the implementation accepts it; the reference rejects it ({row['reference_error']})"
        )
    if verdict == "both rejected" and not row["reference_error_names_argument"]:
        return "fail", f"unclear reference error: {row['reference_error']}"
    return "pass", ""


def died_on_invalid_call(
    spec: OpSpec, implementation: Any, example: Example, rule: Rule, dtype: str, died: ProcessDied
) -> dict[str, Any]:
    """The row of an invalid call that killed its process or never returned (instead of
    raising): verdict crash or hang, and a repro that makes the call in a watched child."""
    from conformance.judge import repro
    from conformance.judge.history import history_code

    arrays, config = broken(rule, example, spec)
    stored = numpy_dtype(dtype)
    args = tuple(None if a is None else a.astype(stored) for a in arrays.values())
    script = history_code([Call(spec.name, args, config)], implementation)
    return {
        "op": spec.name,
        "implementation": implementation.name,
        "dtype": dtype,
        "direction": "invalid call",
        "rule": rule.name,
        "argument": rule.argument,
        "example_key": f"{rule.name}: {example.key()}",
        "example": f"{rule.name}: "
        + ", ".join(f"{k} {a.shape}" for k, a in arrays.items() if a is not None)
        + f"; {config!r}",
        "config": repr(config),
        "shapes": repr({k: None if a is None else a.shape for k, a in arrays.items()}),
        "error_verdict": died.verdict,
        "verdict": died.verdict,
        "failed_outputs": died.verdict,
        "problem": str(died),
        "normalized_error": np.nan,
        "bound_ratio": np.nan,
        "repro": repro.in_subprocess(script, died),
    }


def invalid_row(
    spec: OpSpec, implementation: Any, example: Example, rule: Rule, dtype: str
) -> dict[str, Any]:
    """One invalid call's row, judged: both must reject it. A call that kills its process or
    never returns is a crash or a hang, as for a valid one."""
    try:
        row = check_invalid(spec, implementation, example, rule, dtype)
    except ProcessDied as died:
        row = died_on_invalid_call(spec, implementation, example, rule, dtype, died)
        row["regions"] = rule.name
        return row
    row["regions"] = rule.name  # a baseline entry names the rule as its region
    verdict, problem = judge(row)
    if (
        verdict == "fail"
        and row["error_verdict"] == "only the reference rejected"
        and not getattr(implementation, "validates_like_torch", True)
    ):
        # a framework with argument rules of its own (ONNX, JAX) accepting a call torch's
        # rules forbid: what it then computes is outside torch's semantics, not judged
        verdict = "unsupported"
        problem = f"{implementation.name} does not check torch's rule ({rule.name}): {problem}"
    row.update(verdict=verdict, problem=problem)
    return row
