"""Standalone repro snippets: numpy plus the implementation under test, copy-paste runnable.

Arrays are written as exact literals (repr of each value as a Python float is exact for every
float16/32/64 value), so the snippet replays the very inputs the implementation saw. The
implementation's adapter supplies the lines that compute ``got`` (a dict of NumPy arrays per
output name) from the arrays, ``grad_output`` and ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Arrays of more elements than this are written as their bytes in hex, not as literals: a
# model's activations (a ResNet-18 layer's 32,768 values at 32x32, 800,000 at 224x224) and
# the earlier calls' arrays of its history took seconds per array to write as literals, and
# no reader reads them number by number
LITERAL_LIMIT = 4096


def _literals(values: list[float]) -> str:
    """Each float as Python reads it back exactly (repr), NaN and infinities by name."""
    return ", ".join(
        repr(v) if v - v == 0 else "np.nan" if v != v else "np.inf" if v > 0 else "-np.inf"
        for v in values
    )


def array_code(array: np.ndarray | None, dtype: str) -> str:
    """A NumPy expression of ``array``, exact: a literal, or past LITERAL_LIMIT elements its
    bytes in hex; bfloat16 values are written in float32, which holds each of them exactly
    (NumPy has no bfloat16; the call lines convert)."""
    if array is None:
        return "None"
    dtype = "float32" if dtype == "bfloat16" else dtype
    integral = array.dtype.kind in "iub"
    if array.size > LITERAL_LIMIT:
        stored = array if integral else array.astype(np.float64)
        kind = stored.dtype.newbyteorder("<").str
        data = stored.astype(kind, copy=False).tobytes().hex()
        return (
            f"np.frombuffer(bytes.fromhex('{data}'), dtype='{kind}')"
            f".astype(np.{dtype}).reshape({tuple(array.shape)})"
        )
    if integral:
        body = ", ".join(str(int(v)) for v in array.ravel().tolist())
    else:
        body = _literals(array.astype(np.float64).ravel().tolist())
    return f"np.array([{body}], dtype=np.{dtype}).reshape({tuple(array.shape)})"


def _torch_derivative_lines(
    lines: list[str],
    call: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    direction: str,
    wanted: Sequence[bool],
    to: str,
) -> list[str]:
    """jvp: forward-mode AD with dual tensors; double_backward: torch.autograd.grad twice."""
    graded = [a for a, grad in zip(array_names, wanted, strict=False) if grad]
    tensor = f"lambda a: None if a is None else torch.from_numpy(a){to}"
    lines.append(f"as_tensor = {tensor}")
    lines.append("call_config = {k: v for k, v in config.items() if k != 'return_indices'}")
    if direction == "jvp":
        lines.append("import torch.autograd.forward_ad as fwAD")
        lines.append("fwAD.enter_dual_level()")
        for name in array_names:
            lines.append(f"{name} = as_tensor({name})")
        for index, name in enumerate(graded):
            lines.append(
                f"{name} = {name} if {name} is None or tangents[{index}] is None else "
                f"fwAD.make_dual({name}, as_tensor(tangents[{index}]))"
            )
        lines.append(f"out = {call.replace('**config', '**call_config')}")
        lines.append("first = out[0] if isinstance(out, tuple) else out")
        lines.append(f"got = {{{output_names[0]!r}: as_numpy(fwAD.unpack_dual(first).tangent)}}")
        lines.append("fwAD.exit_dual_level()")
        return lines
    for name in array_names:
        grad = name in graded
        lines.append(
            f"{name} = None if {name} is None else as_tensor({name}).requires_grad_({grad})"
        )
    lines.append("grad_output = as_tensor(grad_output).requires_grad_(True)")
    lines.append(f"out = {call.replace('**config', '**call_config')}")
    lines.append("first_out = out[0] if isinstance(out, tuple) else out")
    lines.append(f"graded = [{', '.join(graded)}]")
    lines.append("present = [t for t in graded if t is not None]")
    lines.append("first = torch.autograd.grad(first_out, present, grad_output, create_graph=True)")
    lines.append("cotangents = [as_tensor(v) for v, t in zip(grad_grads, graded) if t is not None]")
    lines.append(
        "second = iter(torch.autograd.grad(first, [*present, grad_output], cotangents, "
        "allow_unused=True, materialize_grads=True))"
    )
    lines.append(
        "values = [None if t is None else as_numpy(next(second)) for t in graded]"
        " + [as_numpy(next(second))]"
    )
    lines.append(f"got = dict(zip({tuple(output_names)!r}, values))")
    return lines


def torch_lines(
    call: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    backward: bool | str,
    differentiable: Sequence[bool] | None = None,
    dtype: str = "float64",
) -> list[str]:
    """Compute ``got`` with torch: tensors from the arrays, ``call`` giving ``out``.
    ``backward``: False (forward), True (backward), or 'jvp' or 'double_backward'."""
    lines = ["import torch", ""]
    to = ".to(torch.bfloat16)" if dtype == "bfloat16" else ""
    if dtype == "bfloat16":  # NumPy has no bfloat16: float32 holds each value exactly
        lines.append(
            "as_numpy = lambda t: (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy()"
        )
    else:
        lines.append("as_numpy = lambda t: t.detach().numpy()")
    wanted = list(differentiable or [True] * len(array_names))
    if isinstance(backward, str):
        return _torch_derivative_lines(lines, call, array_names, output_names, backward, wanted, to)
    for name, grad in zip(array_names, wanted, strict=False):
        lines.append(
            f"{name} = None if {name} is None else "
            f"torch.from_numpy({name}){to}.requires_grad_({backward and grad})"
        )
    lines.append(f"out = {call}")
    lines.append("outputs = out if isinstance(out, tuple) else (out,)")
    if not backward:
        lines.append(f"got = dict(zip({tuple(output_names)!r}, (as_numpy(o) for o in outputs)))")
        # arrays updated in place (running statistics) are outputs under their own names
        return lines + [f"got[{n!r}] = as_numpy({n})" for n in array_names if n in output_names]
    lines.append(f"outputs[0].backward(torch.from_numpy(grad_output){to})")
    graded = [a for a, grad in zip(array_names, wanted, strict=False) if grad]
    items = ", ".join(
        f"{g!r}: None if {a} is None else as_numpy({a}.grad)"
        for a, g in zip(graded, output_names, strict=False)
    )
    return [*lines, f"got = {{{items}}}"]


def module_lines(
    module: str,
    attribute: str,
    op: str,
    array_names: Sequence[str],
    output_names: Sequence[str],
    backward: bool | str,
    dtype: str = "float64",
) -> list[str]:
    """Compute ``got`` by calling a user's implementation, importable as module[:attribute]
    (``backward``: False, True, or 'jvp' or 'double_backward')."""
    lines = [
        "import importlib",
        "import os",
        "import sys",
        "",
        "sys.path.insert(0, os.getcwd())  # run this where the implementation imports",
        f"impl = importlib.import_module({module!r})",
    ]
    if dtype == "bfloat16":
        lines += ["import ml_dtypes", ""]
        lines += [
            f"{name} = None if {name} is None else {name}.astype(ml_dtypes.bfloat16)"
            for name in (*array_names, "grad_output")
        ]
    if attribute:
        lines.append(f"impl = getattr(impl, {attribute!r})")
    arguments = ", ".join(array_names)
    if backward == "jvp":
        lines.append(f"out = impl.{op}_jvp(tangents, {arguments}, **config)")
    elif backward == "double_backward":
        lines.append(
            f"out = impl.{op}_double_backward(grad_output, grad_grads, {arguments}, **config)"
        )
    elif backward:
        lines.append(f"out = impl.{op}_backward(grad_output, {arguments}, **config)")
    else:
        lines.append(f"out = impl.{op}({arguments}, **config)")
    lines.append("outputs = out if isinstance(out, tuple) else (out,)")
    lines.append(f"got = dict(zip({tuple(output_names)!r}, outputs))")
    if backward:
        return lines
    return lines + [f"got[{n!r}] = {n}" for n in array_names if n in output_names]


# The comparison a snippet makes, the campaign's own (error_model.measure): values within
# their bound, or bit for bit for exact outputs; a NaN or infinity only where the oracle has
# it, an overflow to the oracle's signed infinity accepted where the bound reaches the
# dtype's largest value, and no claim where the bound is infinite.
_COMPARE = """
def compare(name, actual, expected, bound=None):
    \"\"\"What is wrong with one output, or '' when nothing is.\"\"\"
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return f"{name}: shape {actual.shape}, expected {expected.shape}"
    if actual.size == 0:
        return ""
    if bound is None or expected.dtype.kind != "f":  # bit for bit, NaN-aware, signed zeros apart
        if expected.dtype.kind == "f":
            a = actual.astype(np.float64)
            same = (np.isnan(a) & np.isnan(expected)) | (
                (a == expected) & (np.signbit(a) == np.signbit(expected)))
        else:
            same = actual == expected
        if same.all():
            return ""
        at = tuple(int(i) for i in np.argwhere(~same)[0])
        return (f"{name}[{at}]: expected {expected[at].item()!r}, got {actual[at].item()!r} "
                f"(compared bit for bit; {int((~same).sum())} of {same.size} elements differ)")
    a = actual.astype(np.float64)
    reach = np.abs(expected) + bound
    overflowed = np.isfinite(expected) & (reach >= LARGEST) & np.isinf(a)
    overflowed &= np.signbit(a) == np.signbit(expected)
    a = np.where(overflowed | np.isposinf(bound), expected, a)
    special = (np.isnan(a) != np.isnan(expected)) | (
        (np.isinf(a) | np.isinf(expected)) & ~np.isnan(expected) & (a != expected))
    if special.any():
        at = tuple(int(i) for i in np.argwhere(special)[0])
        return f"{name}[{at}]: expected {expected[at].item()!r}, got {actual[at].item()!r}"
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(np.isfinite(expected), np.abs(a - expected), 0.0)
        ratio = np.where(error == 0, 0.0, error / bound)
    at = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    at = tuple(int(i) for i in at)
    if ratio[at] <= 1:
        return ""
    return (f"{name}[{at}]: expected {expected[at].item()!r}, got {actual[at].item()!r}: error "
            f"{error[at]:.3g} exceeds the bound {bound[at]:.3g} ({ratio[at]:.3g} times it)")
"""


def _indented(lines: Sequence[str]) -> list[str]:
    return ["    " + line if line else "" for line in lines]


def _guarded_call(call_lines: Sequence[str], raises: bool) -> list[str]:
    """The call, where a raised exception is the finding (``raises``) or a sign that it did
    not reproduce; a module that does not import means it could not run at all (exit 2)."""
    found = (
        [
            "    print(f'REPRODUCED: the call raised {type(error).__name__}: {error}')",
            "    sys.exit(1)",
        ]
        if raises
        else [
            "    print(f'NOT REPRODUCED: the call raised {type(error).__name__}: {error}, "
            "where the campaign saw it return')",
            "    sys.exit(0)",
        ]
    )
    return [
        "try:",
        *_indented(call_lines),
        "except ImportError as error:",
        "    print(f'COULD NOT RUN: {error}')",
        "    sys.exit(2)",
        "except Exception as error:",
        *found,
    ]


def snippet(
    dtype: str,
    arrays: Mapping[str, np.ndarray | None],
    config: Mapping[str, Any],
    grad_output: np.ndarray | None,
    call_lines: Sequence[str],
    expected: Mapping[str, np.ndarray],
    bounds: Mapping[str, np.ndarray],
    extra: tuple[str, Sequence[np.ndarray | None]] | None = None,
    raises: bool = False,
    note: str = "",
) -> str:
    """A script that recomputes the outputs and compares each with the oracle: it prints
    ``REPRODUCED: ...`` (the worst element: index, expected, actual, error, bound) and exits 1
    when the discrepancy is there, ``NOT REPRODUCED`` and exit 0 when it is not, exit 2 when
    it cannot run.

    ``expected`` is the oracle per output name; ``bounds`` the error bound of each output not
    compared bitwise; ``extra`` the tangents or grad_grads of the derivative directions, as
    (name, one array or None per differentiable argument); ``raises``: the finding is that
    the call raises.
    """
    from conformance.catalogue.dtypes import largest

    lines = ["import sys", "", "import numpy as np", ""]
    for name, array in arrays.items():
        lines.append(f"{name} = {array_code(array, dtype)}")
    lines.append(f"grad_output = {array_code(grad_output, dtype)}")
    if extra is not None:
        items = "".join(f"{array_code(a, dtype)}, " for a in extra[1])
        lines.append(f"{extra[0]} = ({items})")
    lines.append(f"config = {dict(config)!r}")
    lines += _guarded_call(call_lines, raises)
    if raises:
        lines += ["print('NOT REPRODUCED: the call returned')", "sys.exit(0)"]
        return "\n".join(lines) + "\n"
    lines += ["", f"LARGEST = {largest(dtype)!r}  # {dtype}'s largest finite value", _COMPARE]
    lines.append("problems = []")
    for name in expected:
        lines.append(f"expected = {array_code(expected[name], str(expected[name].dtype))}")
        bound = array_code(bounds[name], "float64") if name in bounds else "None"
        lines.append(f"bound = {bound}")
        lines.append(f"problems.append(compare({name!r}, got[{name!r}], expected, bound))")
    lines += [
        "problems = [p for p in problems if p]",
        "if problems:",
        "    print('REPRODUCED: ' + '; '.join(problems))",
        *([f"    print({note!r})"] if note else []),
        "    sys.exit(1)",
        "print('NOT REPRODUCED: every output matches the oracle within its bound')",
        "sys.exit(0)",
    ]
    return "\n".join(lines) + "\n"


MARK = "conformance: calling"


def in_subprocess(inner: str, died: Any, time_limit: float | None = None) -> str:
    """A repro of a call that killed its process or never returned: ``inner`` (the call's
    own snippet) runs in a child interpreter, which this script watches. The child says when
    it starts calling (its imports, however slow the machine, are not the call), and the
    time limit counts from there. ``died``: the ProcessDied the campaign saw (its verdict
    'crash' or 'hang', a crash's wait status)."""
    limit = float(getattr(died, "seconds", None) or time_limit or 60.0)
    status = getattr(died, "status", None)
    announced = inner.replace("try:\n", f"try:\n    print({MARK!r}, flush=True)\n", 1)
    lines = [
        '"""The call below killed its process, or never returned, when the campaign made it:',
        "it runs here in a child interpreter, watched (exit 1: it did so again; 0: it did",
        'not)."""',
        "",
        "import signal",
        "import subprocess",
        "import sys",
        "",
        f"CALL = {announced!r}",
        f"LIMIT_S = {limit!r}  # from the moment the child starts calling",
        "child = subprocess.Popen([sys.executable, '-c', CALL], stdout=subprocess.PIPE,",
        "                         stderr=subprocess.PIPE, text=True)",
        f"while child.stdout.readline().strip() not in ({MARK!r}, ''):",
        "    pass",
        "try:",
        "    out, err = child.communicate(timeout=LIMIT_S)",
        "except subprocess.TimeoutExpired:",
        "    child.kill()",
        "    print(f'REPRODUCED: the call did not return within {LIMIT_S:g} s')",
        "    sys.exit(1)",
        "if child.returncode < 0:",
        "    name = signal.Signals(-child.returncode).name",
        "    print(f'REPRODUCED: the call killed its process: {name} '",
        "          f'(signal {-child.returncode}); its last words: {err[-300:]!r}')",
        "    sys.exit(1)",
    ]
    if status is not None and not (status & 0x7F) and (status >> 8) not in (0, 1, 2):
        lines += [
            f"if child.returncode == {status >> 8}:",
            "    print(f'REPRODUCED: the process exited with status {child.returncode}')",
            "    sys.exit(1)",
        ]
    lines += [
        "print('NOT REPRODUCED: the call ran to its end; it said:', out.strip()[-300:])",
        "sys.exit(0)",
    ]
    return "\n".join(lines) + "\n"


def with_history(previous: str, script: str) -> str:
    """A repro whose discrepancy shows only after the calls made before it in the same
    process: ``previous`` (history code) runs first, then ``script``."""
    head = (
        '"""History-dependent: alone, in a fresh process, this call is right; after the calls\n'
        'made before it in the campaign\'s process (replayed first, below), it is not."""\n\n'
    )
    return head + previous + "\n# the call that disagreed\n" + script


def oracle_snippet(prepared: Any) -> str:
    """The repro of an oracle error: the reference's call on the example (it must not
    raise: the strategy calls the example valid). Exit 1 when it raises."""
    arrays = prepared.oracle_in
    lines = ["import sys", "", "import numpy as np", "", "import reference", ""]
    for name, array in arrays.items():
        lines.append(f"{name} = {array_code(array, 'float64')}")
    lines.append(f"config = {dict(prepared.config)!r}")
    call = f"reference.{prepared.spec.name}({', '.join(arrays)}, **config)"
    lines += [
        "try:",
        f"    {call}",
        "except Exception as error:",
        "    print(f'REPRODUCED: the reference raised {type(error).__name__}: {error}')",
        "    sys.exit(1)",
        "print('NOT REPRODUCED: the reference accepted the call')",
        "sys.exit(0)",
    ]
    return "\n".join(lines) + "\n"


def harness_snippet(prepared: Any, row: Mapping[str, Any]) -> str:
    """The repro of a harness error: the campaign's own judgement of the example, which
    must not raise (the suite's defect, not the implementation's)."""
    example = prepared.example
    lines = [
        "import sys",
        "",
        "import numpy as np",
        "",
        "from conformance.catalogue import CATALOGUE",
        "from conformance.judge.check import run_example",
        "from conformance.catalogue.example import Example",
        "from conformance.implementations import load_implementation",
        "",
        "arrays = {",
        *[f"    {k!r}: {array_code(a, 'float64')}," for k, a in example.arrays.items()],
        "}",
        f"example = Example(arrays, {dict(example.config)!r}, {example.values!r}, "
        f"{example.seed!r})",
        f"spec = next(s for s in CATALOGUE if s.name == {prepared.spec.name!r})",
        f"implementation = load_implementation({str(row['implementation'])!r})",
        f"outcome = run_example(spec, implementation, {prepared.dtype!r}, "
        f"{prepared.direction!r}, example)",
        "if outcome.row['verdict'] == 'harness error':",
        "    print('REPRODUCED:', outcome.row['problem'])",
        "    sys.exit(1)",
        "print('NOT REPRODUCED: verdict', outcome.row['verdict'])",
        "sys.exit(0)",
    ]
    return "\n".join(lines) + "\n"


def window_note(op: str, config: Mapping[str, Any], input: np.ndarray, at: tuple[int, ...]) -> str:
    """For a pooling op's output element ``at``: the input elements of its window and their
    values (for max pooling the value -inf, NaN or a tie in the window is the whole story);
    '' for other ops."""
    import re

    from reference.pool import plan_pool

    found = re.fullmatch(r"(max|avg|lp)_pool([123])d", op)
    if found is None:
        return ""
    kind, dims = found.group(1), int(found.group(2))
    plan = plan_pool(
        dims,
        op,
        input,
        config["kernel_size"],
        config.get("stride"),
        0 if kind == "lp" else config.get("padding", 0),
        config.get("dilation", 1) if kind == "max" else 1,
        bool(config.get("ceil_mode", False)),
        broadcast=kind != "lp",
    )
    position = (0, *at) if plan.unbatched else tuple(at)
    if len(position) != dims + 2:
        return ""
    valid, flat = plan.grids()
    inside = flat[position[2:]][valid[position[2:]]]
    spatial = plan.spatial
    values = plan.input[position[0], position[1]].reshape(-1)[inside]
    where = [tuple(int(i) for i in np.unravel_index(f, spatial)) for f in inside]
    outside = int((~valid[position[2:]]).sum())
    listed = ", ".join(f"{w}: {float(v)!r}" for w, v in zip(where, values, strict=True))
    return (
        f"the window of output{tuple(at)} (n={position[0]}, c={position[1]}): "
        f"{len(where)} input elements {{{listed or 'none'}}}"
        + (f", {outside} taps in the padding" if outside else "")
    )
