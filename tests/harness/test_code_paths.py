"""The CPU code path as a fact and as a name: parsing torch[cpu:...], refusing what this CPU
cannot run, and the platform conditions baseline entries carry."""

from __future__ import annotations

import pytest

from conformance.implementations import code_paths

AMX_MACHINE = frozenset(
    "sse4_1 avx avx2 fma avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 "
    "avx512_fp16 amx_tile amx_int8 amx_bf16".split()
)
AVX2_MACHINE = frozenset("sse4_1 avx avx2 fma".split())


def test_names_split_at_commas_outside_brackets() -> None:
    assert code_paths.split_specs("torch, torch[cpu:avx2,threads:2],jax") == [
        "torch",
        "torch[cpu:avx2,threads:2]",
        "jax",
    ]
    assert code_paths.parse("torch[cpu:avx2, threads:2]") == (
        "torch",
        {"cpu": "avx2", "threads": "2"},
    )
    assert code_paths.parse("mymodule:impl") == ("mymodule:impl", {})


def test_environment_caps_only_go_down() -> None:
    assert code_paths.environment("torch[cpu:avx2]", AMX_MACHINE) == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert code_paths.environment("torch[aten:avx2,threads:3]", AMX_MACHINE) == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "CONFORMANCE_TORCH_THREADS": "3",
    }
    with pytest.raises(ValueError, match="lacks avx512f, avx512bw, avx512vl, avx512dq"):
        code_paths.environment("torch[cpu:avx512_core]", AVX2_MACHINE)
    with pytest.raises(ValueError, match="threads must be a positive number"):
        code_paths.environment("torch[threads:0]", AMX_MACHINE)
    with pytest.raises(ValueError, match="code paths apply to"):
        code_paths.environment("jax[cpu:avx2]", AMX_MACHINE)


def test_list_says_why_a_path_is_not_available() -> None:
    listed = dict(code_paths.code_paths(AVX2_MACHINE))
    assert listed["torch[cpu:avx2]"] == ""
    assert "lacks" in listed["torch[cpu:avx512_core_amx]"]
    assert listed["torch[aten:avx512]"].startswith("not available")
    on_amx = dict(code_paths.code_paths(AMX_MACHINE))
    assert on_amx["torch[cpu:avx512_core_amx]"] == ""
    assert on_amx["torch[cpu:avx512_core_amx_fp16]"].endswith("lacks amx_fp16")


@pytest.mark.parametrize(
    ("condition", "facts", "holds"),
    [
        ("", {}, True),
        ("onednn>=avx512_core_fp16", {"onednn isa": "avx512_core_amx"}, True),
        ("onednn>=avx512_core_fp16", {"onednn isa": "avx512_core_bf16"}, False),
        ("onednn>=avx512_core_fp16", {}, False),  # not torch: no oneDNN at all
        ("onednn<avx512_core", {"onednn isa": "avx2"}, True),
        ("aten=avx2", {"aten capability": "avx2"}, True),
        ("threads>=2", {"threads": 1}, False),
        ("threads>=2;onednn>=avx2", {"threads": 4, "onednn isa": "avx2"}, True),
        ("amx_bf16", {"cpu flags": "avx2 amx_bf16"}, True),
        ("!amx_bf16", {"cpu flags": "avx2 amx_bf16"}, False),
        ("avx512_fp16", {"cpu flags": "avx2"}, False),
    ],
)
def test_platform_conditions(condition: str, facts: dict[str, object], holds: bool) -> None:
    assert code_paths.condition_holds(condition, facts) is holds


@pytest.mark.parametrize(
    ("condition", "message"),
    [("onednn>=avx9", "is not one of"), ("gpu>=3", "compare onednn, aten or threads")],
)
def test_bad_conditions_are_refused(condition: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        code_paths.check_condition(condition)
