"""The CPU code path an implementation runs, as a fact of the verdict and as a name.

torch's CPU kernels are chosen by the CPU: ATen dispatches its vectorized kernels by a
capability (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512), and sends
bfloat16 and float16 convolutions to oneDNN where its device checks pass
(``torch.ops.mkldnn._is_mkldnn_bf16_supported``, ``_fp16_``), which then runs the best
instruction set it finds (avx2, avx512_core, avx512_core_bf16, avx512_core_fp16,
avx512_core_amx, ...). The same call can take a path on one machine that another never
reaches; a verdict says which path it judged (``platform_facts``), and a baseline entry may
hold only where its path is taken (``condition_holds``).

Each path a machine can reach is an implementation of its own: ``torch[cpu:avx2]`` caps
oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``), ``torch[aten:avx2]`` ATen's capability
(``ATEN_CPU_CAPABILITY``), ``torch[threads:2]`` the intra-op threads; several options join
with commas, ``torch[cpu:avx512_core_bf16,threads:2]``. Caps only go down: a path above the
CPU's is refused, with what it lacks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

# oneDNN's x64 instruction sets, lowest first, each with the CPU flags it needs (beside those
# of the sets below it)
ONEDNN_ISAS: dict[str, tuple[str, ...]] = {
    "sse41": ("sse4_1",),
    "avx": ("avx",),
    "avx2": ("avx2", "fma"),
    "avx512_core": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "avx512_core_vnni": ("avx512_vnni",),
    "avx512_core_bf16": ("avx512_bf16",),
    "avx512_core_fp16": ("avx512_fp16",),
    "avx512_core_amx": ("amx_tile", "amx_int8", "amx_bf16"),
    "avx512_core_amx_fp16": ("amx_fp16",),
}
# ATen's CPU capabilities (ATEN_CPU_CAPABILITY), lowest first, and what each needs
ATEN_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "default": (),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
}
# the flags a report states: those that decide torch's half-precision paths
REPORTED_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
)
CODE_PATH_OPTIONS = ("cpu", "aten", "threads")
# the built-in implementations a code path applies to: torch's eager adapters
CODE_PATH_BASES = ("torch", "torch-channels_last")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _best(levels: Mapping[str, tuple[str, ...]], flags: frozenset[str]) -> str | None:
    best = None
    for level, needs in levels.items():
        if not set(needs) <= flags:
            break
        best = level
    return best


def best_onednn_isa(flags: frozenset[str] | None = None) -> str | None:
    """The highest oneDNN instruction set the CPU runs (None: not an x86-64 CPU we know)."""
    return _best(ONEDNN_ISAS, cpu_flags() if flags is None else flags)


def _missing(levels: Mapping[str, tuple[str, ...]], level: str, flags: frozenset[str]) -> list[str]:
    """The flags the CPU lacks for ``level``."""
    names = list(levels)
    needed = [flag for below in names[: names.index(level) + 1] for flag in levels[below]]
    return [flag for flag in needed if flag not in flags]


def parse(spec: str) -> tuple[str, dict[str, str]]:
    """'torch[cpu:avx2,threads:2]' -> ('torch', {'cpu': 'avx2', 'threads': '2'}); a name
    without brackets has no options."""
    found = re.fullmatch(r"([^\[\]]+)\[([^\[\]]*)\]", spec.strip())
    if found is None:
        if "[" in spec or "]" in spec:
            raise ValueError(f"implementation {spec!r}: expected NAME[option:value,...]")
        return spec.strip(), {}
    base, body = found.group(1).strip(), found.group(2)
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, colon, value = part.partition(":")
        key, value = key.strip(), value.strip().lower()
        if not colon or key not in CODE_PATH_OPTIONS or not value:
            raise ValueError(
                f"implementation {spec!r}: unknown code-path option {part!r}; choose from "
                + ", ".join(f"{o}:VALUE" for o in CODE_PATH_OPTIONS)
            )
        options[key] = value
    if not options:
        raise ValueError(f"implementation {spec!r}: no code-path option in the brackets")
    return base, options


def environment(spec: str, flags: frozenset[str] | None = None) -> dict[str, str]:
    """The environment that puts an implementation on its code path, checked against this
    CPU: a path it cannot run is a ValueError naming what it lacks."""
    base, options = parse(spec)
    if not options:
        return {}
    if base not in CODE_PATH_BASES:
        raise ValueError(
            f"implementation {spec!r}: code paths apply to {', '.join(CODE_PATH_BASES)}"
        )
    flags = cpu_flags() if flags is None else flags
    settings: dict[str, str] = {}
    for key, levels, variable in (
        ("cpu", ONEDNN_ISAS, "ONEDNN_MAX_CPU_ISA"),
        ("aten", ATEN_CAPABILITIES, "ATEN_CPU_CAPABILITY"),
    ):
        if key not in options:
            continue
        level = options[key]
        if level not in levels:
            raise ValueError(
                f"implementation {spec!r}: unknown {key} level {level!r}; choose from "
                + ", ".join(levels)
            )
        missing = _missing(levels, level, flags)
        if missing:
            raise ValueError(
                f"implementation {spec!r}: this CPU cannot run {key}:{level} (it lacks "
                f"{', '.join(missing)}); caps only go down"
            )
        settings[variable] = level.upper() if key == "cpu" else level
    if "threads" in options:
        threads = options["threads"]
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"implementation {spec!r}: threads must be a positive number")
        settings["CONFORMANCE_TORCH_THREADS"] = threads
    return settings


def code_paths(flags: frozenset[str] | None = None) -> list[tuple[str, str]]:
    """Every code-path name of torch and whether this CPU runs it: (name, '' or why not)."""
    flags = cpu_flags() if flags is None else flags
    listed = []
    for key, levels in (("cpu", ONEDNN_ISAS), ("aten", ATEN_CAPABILITIES)):
        for level in levels:
            if key == "cpu" and level in ("sse41", "avx"):
                continue
            missing = _missing(levels, level, flags)
            why = f"not available: this CPU lacks {', '.join(missing)}" if missing else ""
            listed.append((f"torch[{key}:{level}]", why))
    listed.append(("torch[threads:N]", ""))
    return listed


def split_specs(text: str) -> list[str]:
    """--impl's comma-separated names, where a code path's own commas stay inside its
    brackets: 'torch,torch[cpu:avx2,threads:2]' -> ['torch', 'torch[cpu:avx2,threads:2]']."""
    names, depth, current = [], 0, ""
    for character in text:
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            names.append(current.strip())
            current = ""
        else:
            current += character
    names.append(current.strip())
    return [name for name in names if name]


def _onednn_isa() -> str | None:
    """The instruction set oneDNN runs in this process: the CPU's best, capped by
    ONEDNN_MAX_CPU_ISA."""
    best = best_onednn_isa()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()
    names = list(ONEDNN_ISAS)
    if best is None or cap not in names:
        return best
    return names[min(names.index(best), names.index(cap))]


def torch_facts(torch: Any) -> dict[str, Any]:
    """What decides torch's CPU kernels in this process."""
    facts: dict[str, Any] = {
        "aten capability": str(torch.backends.cpu.get_cpu_capability()).lower(),
        "onednn isa": _onednn_isa(),
        "onednn bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "onednn fp16": bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()),
        "threads": int(torch.get_num_threads()),
    }
    for variable in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        if os.environ.get(variable):
            facts[variable] = os.environ[variable]
    return facts


def platform_facts(implementation: Any) -> dict[str, Any]:
    """The CPU flags that matter, and what the implementation says decides its path
    (``platform()``: torch's capability, oneDNN's instruction set and device checks,
    threads)."""
    facts: dict[str, Any] = {
        "cpu flags": " ".join(flag for flag in REPORTED_FLAGS if flag in cpu_flags()) or "none"
    }
    declared = getattr(implementation, "platform", None)
    if callable(declared):
        facts.update(declared())
    return facts


def describe(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in facts.items())


_TERM = re.compile(r"^(!?)([a-z0-9_]+)(?:\s*(>=|<=|<|>|=)\s*([a-z0-9_.]+))?$")


def condition_holds(condition: str, facts: Mapping[str, Any]) -> bool:
    """A baseline entry's platform condition against an implementation's facts: terms joined
    by ';', all of which must hold. A term is a CPU flag ('avx512_fp16', '!amx_bf16'), or a
    comparison with oneDNN's instruction set ('onednn>=avx512_core_fp16'), ATen's capability
    ('aten=avx2') or the threads ('threads>=2'). A fact the implementation does not state
    (oneDNN, for a framework that is not torch) makes its term false. Empty: always."""
    for term in filter(None, (t.strip().lower() for t in condition.split(";"))):
        if not _holds(term, facts):
            return False
    return True


def check_condition(condition: str) -> None:
    """A ValueError naming what is wrong with a platform condition."""
    for term in filter(None, (t.strip().lower() for t in condition.split(";"))):
        found = _TERM.match(term)
        if found is None:
            raise ValueError(f"platform condition {condition!r}: cannot read {term!r}")
        _, name, operator, value = found.groups()
        if operator is None:
            continue
        levels = {"onednn": ONEDNN_ISAS, "aten": ATEN_CAPABILITIES}.get(name)
        if levels is not None and value not in levels:
            raise ValueError(
                f"platform condition {condition!r}: {value!r} is not one of {', '.join(levels)}"
            )
        if levels is None and not (name == "threads" and value.isdigit()):
            raise ValueError(
                f"platform condition {condition!r}: compare onednn, aten or threads, not {name!r}"
            )


def _holds(term: str, facts: Mapping[str, Any]) -> bool:
    found = _TERM.match(term)
    if found is None:
        return False
    negated, name, operator, value = found.groups()
    if operator is None:  # a CPU flag
        present = name in str(facts.get("cpu flags", "")).split()
        return present != bool(negated)
    if name == "threads":
        have: Any = facts.get("threads")
        want: Any = int(value)
    else:
        levels = list({"onednn": ONEDNN_ISAS, "aten": ATEN_CAPABILITIES}[name])
        fact = facts.get("onednn isa" if name == "onednn" else "aten capability")
        if fact not in levels or value not in levels:
            return False
        have, want = levels.index(str(fact)), levels.index(value)
    if have is None:
        return False
    result = {
        ">=": have >= want,
        "<=": have <= want,
        ">": have > want,
        "<": have < want,
        "=": have == want,
    }[operator]
    return bool(result) != bool(negated)
