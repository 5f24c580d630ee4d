"""Each op's signatures as an implementation must offer them, read from the catalogue: the
forward (reference's own signature: torch.nn.functional's), the backward, the forward-mode
derivative and the second derivatives, each with what it returns."""

from __future__ import annotations

import inspect

from conformance.catalogue.spec import OpSpec
from conformance.judge.derivatives import GRAD_GRAD_OUTPUT, JVP_OUTPUT


def _parameters(spec: OpSpec) -> str:
    parameters = inspect.signature(spec.reference).parameters.values()
    return ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in parameters)


def _forward_returns(spec: OpSpec) -> str:
    outputs = spec.outputs({"return_indices": False})
    text = outputs[0] if len(outputs) == 1 else f"({', '.join(outputs)})"
    if "return_indices" in inspect.signature(spec.reference).parameters:
        text += "; with return_indices=True: (output, indices), indices int64"
    if spec.mutated:
        text += f"; updates {', '.join(spec.mutated)} in place (training)"
    return text


def signature_lines(spec: OpSpec) -> list[str]:
    """The op's signatures, one direction a line, each followed by what it returns."""
    parameters = _parameters(spec)
    lines = [f"{spec.name}({parameters})", f"    -> {_forward_returns(spec)}"]
    if "backward" not in spec.directions:
        return lines
    gradients = ", ".join(spec.gradient_names)
    as_tuple = f"({gradients},)" if len(spec.gradient_names) == 1 else f"({gradients})"
    lines += [
        f"{spec.name}_backward(grad_output, {parameters})",
        f"    -> {as_tuple}: a tuple, always, one gradient per differentiable argument "
        f"({', '.join(spec.differentiable)}), None for an argument given as None",
    ]
    if "jvp" in spec.directions:
        lines += [
            f"{spec.name}_jvp(tangents, {parameters})",
            f"    tangents: a tuple, one array (or None) per {', '.join(spec.differentiable)}",
            f"    -> {JVP_OUTPUT}: the first output's forward-mode derivative, one array",
        ]
    if "double_backward" in spec.directions:
        lines += [
            f"{spec.name}_double_backward(grad_output, grad_grads, {parameters})",
            f"    grad_grads: a tuple, one array (or None) per {', '.join(spec.differentiable)}",
            f"    -> ({gradients}, {GRAD_GRAD_OUTPUT}): the gradients of sum_i <grad_grads[i], "
            f"{spec.name}_backward(grad_output, ...)[i]> with respect to each differentiable "
            "argument, then to grad_output",
        ]
    return lines
