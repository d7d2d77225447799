"""vLLM arguments: goldens, the prefix-caching rule, extra-flag validation, the real parser."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bakeoff_runtime.vllm_args import (
    MANAGED_FLAGS,
    UnknownVLLMFlagError,
    VLLMArgumentError,
    known_vllm_flags,
    render_launch,
    vllm_args,
)
from runtime_builders import variant

GOLDENS = Path(__file__).parent / "goldens"

GOLDEN_VARIANTS = {
    "llama-3.1-70b-fp8-h100-tp1": lambda: variant("llama-3.1-70b", "fp8", "h100", 1, max_model_len=4608),
    "llama-3.1-70b-bf16-online-fp8-h100-tp2": lambda: variant(
        "llama-3.1-70b", "fp8", "h100", 2, online_quantization=True, model_source="meta-llama/Llama-3.1-70B-Instruct"
    ),
    "llama-3.1-8b-int4-a6000-fp8-kv": lambda: variant("llama-3.1-8b", "int4", "a6000", kv_cache_dtype="fp8"),
    "llama-3.1-8b-fp8-a100-weight-only": lambda: variant("llama-3.1-8b", "fp8", "a100-80gb", max_num_seqs=128),
    "apriel-h1-h30-bf16-h100": lambda: variant("apriel-h1-h30", "bf16", "h100", max_model_len=32768),
    "apriel-h1-h30-bf16-h100-prefix-caching": lambda: variant(
        "apriel-h1-h30", "bf16", "h100", max_model_len=32768, enable_prefix_caching=True
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_VARIANTS))
def test_vllm_launch_matches_golden(name: str) -> None:
    launch = render_launch(GOLDEN_VARIANTS[name](), extra_args=["--disable-log-stats", "--seed=0"])
    text = launch.render() + f"# spec hash\n{launch.spec_hash}\n"
    path = GOLDENS / f"vllm-{name}.txt"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.write_text(text)
        pytest.fail(f"UPDATE_GOLDENS=1 rewrote {path.name}; review the diff and run again without it")
    assert path.exists(), f"missing golden {path.name}: run with UPDATE_GOLDENS=1"
    assert text == path.read_text()


def test_rendering_is_deterministic_and_sorted() -> None:
    v = GOLDEN_VARIANTS["llama-3.1-70b-fp8-h100-tp1"]()
    a = render_launch(v, ["--seed=1", "--disable-log-stats"])
    b = render_launch(v, ["--disable-log-stats", "--seed", "1"])
    assert a == b
    assert a.args == sorted(a.args)
    assert list(a.env) == sorted(a.env)
    assert a.spec_hash != render_launch(v, ["--seed=2"]).spec_hash


@pytest.mark.parametrize(
    ("name", "expected", "absent"),
    [
        ("llama-3.1-70b-fp8-h100-tp1", "--enable-prefix-caching", "--quantization=fp8"),
        ("llama-3.1-70b-bf16-online-fp8-h100-tp2", "--quantization=fp8", "--mamba-ssm-cache-dtype=float32"),
        ("apriel-h1-h30-bf16-h100", "--no-enable-prefix-caching", "--block-size=16"),
        ("apriel-h1-h30-bf16-h100-prefix-caching", "--enable-prefix-caching", "--no-enable-prefix-caching"),
    ],
)
def test_format_and_architecture_rules(name: str, expected: str, absent: str) -> None:
    args = vllm_args(GOLDEN_VARIANTS[name]())
    assert expected in args
    assert absent not in args


def test_hybrids_get_the_mamba_state_dtype() -> None:
    assert "--mamba-ssm-cache-dtype=float32" in vllm_args(GOLDEN_VARIANTS["apriel-h1-h30-bf16-h100"]())
    assert "--mamba-ssm-cache-dtype=bfloat16" in vllm_args(
        variant("apriel-h1-h30", "bf16", "h100", mamba_ssm_cache_dtype="bfloat16")
    )


def test_tensor_parallel_spawns_workers() -> None:
    assert render_launch(variant("llama-3.1-70b", "bf16", "h100", 2)).env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert "VLLM_WORKER_MULTIPROC_METHOD" not in render_launch(variant("llama-3.1-8b", "bf16", "h100")).env


def test_unknown_flag_names_the_flag_and_the_closest_ones() -> None:
    with pytest.raises(UnknownVLLMFlagError, match="--enable-prefix-cachin'") as err:
        vllm_args(variant("llama-3.1-8b", "bf16", "h100"), ["--enable-prefix-cachin"])
    assert "--enable-prefix-caching" in err.value.suggestions
    assert "--enable-prefix-cachin" in str(err.value)
    assert known_vllm_flags().vllm_version in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tensor-parallel-size=2"], r"from the variant \(tensor_parallel\)"),
        (["--max-num-seqs", "64"], "max_num_seqs"),
        (["--disable-log-stats=true"], "switch"),
        (["--seed"], "needs a value"),
        (["seed=1"], "not a --flag"),
    ],
    ids=["managed", "managed-seqs", "switch-with-value", "missing-value", "not-a-flag"],
)
def test_bad_extra_args_are_rejected(extra: list[str], message: str) -> None:
    with pytest.raises(VLLMArgumentError, match=message):
        vllm_args(variant("llama-3.1-8b", "bf16", "h100"), extra)


def test_flag_list_knows_every_flag_bakeoff_renders() -> None:
    flags = known_vllm_flags()
    assert flags.vllm_version
    assert set(MANAGED_FLAGS) <= flags.all_flags
    assert "--host" in flags.server_flags
    assert "--enable-prefix-caching" in flags.switches
    data = json.loads((Path(__file__).parents[2] / "runtime/bakeoff_runtime/data/vllm_flags.json").read_text())
    assert data["engine_flags"] == sorted(data["engine_flags"])


# The installed vLLM's own parser is exercised in tests/conformance/test_vllm_args_parser.py, which
# runs it under the vLLM environment's interpreter (the core environment has no vLLM).
