"""Memory fit: weights, reserve, KV blocks, Mamba slots, minimal tensor parallel."""

from __future__ import annotations

import pytest
from bakeoff_runtime.gpus import GIB, GPUSpec, get_gpu
from bakeoff_runtime.memory import (
    ReserveModel,
    activation_peak_bytes_per_gpu,
    min_tensor_parallel,
    plan_memory,
    reserve_bytes_per_gpu,
    weight_bytes,
)
from bakeoff_runtime.placement import default_max_model_len, default_max_num_batched_tokens
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.workloads import WORKLOADS
from pydantic import ValidationError
from runtime_builders import variant


def test_weights_follow_the_format_and_keep_embeddings_16_bit() -> None:
    bf16 = weight_bytes(variant("llama-3.1-70b", "bf16", "h100"))
    fp8 = weight_bytes(variant("llama-3.1-70b", "fp8", "h100"))
    int4 = weight_bytes(variant("llama-3.1-70b", "int4", "h100"))
    assert bf16 / 1e9 == pytest.approx(141.1, rel=0.01)
    # FP8 halves the blocks but the 2.1 B embedding and head parameters stay 16-bit.
    assert fp8 / 1e9 == pytest.approx(68.45 + 4.2, rel=0.01)
    assert int4 / 1e9 == pytest.approx(68.45 * (4 + 16 / 128) / 8 + 4.2, rel=0.01)


def test_tensor_parallel_shards_weights_and_kv_heads() -> None:
    one = plan_memory(variant("llama-3.1-70b", "bf16", "h100", 4))
    two = plan_memory(variant("llama-3.1-70b", "bf16", "h100", 8))
    assert two.weight_bytes_per_gpu == pytest.approx(one.weight_bytes_per_gpu / 2)
    assert two.kv_bytes_per_token_per_gpu == pytest.approx(one.kv_bytes_per_token_per_gpu / 2)
    assert two.kv_cache_tokens > one.kv_cache_tokens


def test_more_tensor_parallel_ranks_than_kv_heads_replicate_them() -> None:
    plan = plan_memory(variant("llama-3.1-405b", "fp8", "h100", 16, max_model_len=4096))
    assert plan.kv_bytes_per_token_per_gpu == pytest.approx(2 * 126 * 1 * 128 * 2)


@pytest.mark.parametrize(
    ("model", "fmt", "gpu", "expected"),
    [
        ("llama-3.1-70b", "bf16", "h100", 2),
        ("llama-3.1-70b", "fp8", "h200", 1),
        ("llama-3.1-70b", "int4", "h100", 1),
        ("llama-3.1-70b", "bf16", "l40s", 4),
        ("llama-3.1-8b", "bf16", "l4", 1),
        ("llama-3.1-8b", "bf16", "a10g", 1),
        ("llama-3.1-8b", "fp8", "l4", 1),
        ("llama-3.1-405b", "fp8", "h100", 8),
        ("llama-3.1-405b", "bf16", "h100", None),
    ],
    ids=str,
)
def test_minimal_tensor_parallel(model: str, fmt: str, gpu: str, expected: int | None) -> None:
    assert min_tensor_parallel(variant(model, fmt, gpu, 1, max_model_len=8192)) == expected


def test_a_variant_that_does_not_fit_says_why_and_how_to_fix_it() -> None:
    plan = plan_memory(variant("llama-3.1-70b", "bf16", "h100", 1))
    assert not plan.fits
    assert "exceed" in plan.reason
    assert "tensor parallel" in plan.reason
    assert plan.max_concurrent_sequences(1000) == 0


def test_kv_cache_smaller_than_max_model_len_does_not_fit() -> None:
    plan = plan_memory(variant("llama-3.1-70b", "fp8", "h100", 1, max_model_len=16384))
    assert not plan.fits
    assert "max_model_len" in plan.reason
    assert "FP8 KV cache" in plan.reason


def test_fp8_kv_cache_doubles_the_tokens() -> None:
    auto = plan_memory(variant("llama-3.1-8b", "bf16", "h100"))
    fp8 = plan_memory(variant("llama-3.1-8b", "bf16", "h100", kv_cache_dtype="fp8"))
    assert fp8.kv_cache_tokens == pytest.approx(2 * auto.kv_cache_tokens, rel=0.01)


def test_gpu_memory_utilization_moves_the_kv_cache() -> None:
    low = plan_memory(variant("llama-3.1-8b", "bf16", "h100", gpu_memory_utilization=0.5))
    high = plan_memory(variant("llama-3.1-8b", "bf16", "h100", gpu_memory_utilization=0.95))
    assert high.kv_cache_bytes - low.kv_cache_bytes == pytest.approx(0.45 * 79.6 * GIB, rel=0.01)


def test_reserve_is_the_profiled_peak_and_grows_with_the_step_budget() -> None:
    small = plan_memory(variant("llama-3.1-70b", "fp8", "h100", max_num_batched_tokens=512))
    large = plan_memory(variant("llama-3.1-70b", "fp8", "h100", max_num_batched_tokens=16384))
    assert 0.25 * GIB < small.reserve_bytes_per_gpu < large.reserve_bytes_per_gpu < 6 * GIB
    # The activation peak is the MLP phase: residual + input + gate/up + activated product, 16-bit.
    peak = activation_peak_bytes_per_gpu(variant("llama-3.1-70b", "fp8", "h100", max_num_batched_tokens=16384))
    assert peak == pytest.approx(16384 * (2 * 8192 + 3 * 28672) * 2)
    two = variant("llama-3.1-70b", "fp8", "h100", 2, max_num_batched_tokens=512)
    without_nccl = reserve_bytes_per_gpu(two, ReserveModel(nccl_gib=0))
    assert reserve_bytes_per_gpu(two) - without_nccl == pytest.approx(0.5 * GIB)


@pytest.mark.parametrize("use_case", ["code-completion", "summarization"])
def test_70b_int8_fits_one_a100_at_the_studys_lengths(use_case: str) -> None:
    """The study served 70B INT8 W8A8 on one A100 80GB; vLLM's own defaults for that length must fit."""
    w = WORKLOADS[use_case]
    length = default_max_model_len(w.prompt_tokens + w.output_tokens)
    plan = plan_memory(
        variant(
            "llama-3.1-70b",
            "int8",
            "a100-80gb",
            max_model_len=length,
            max_num_batched_tokens=default_max_num_batched_tokens(length),
        )
    )
    assert plan.fits, plan.reason
    assert plan.margin_bytes_per_gpu > 0.1 * GIB, plan.reason
    assert "to spare" in plan.reason


def test_cuda_context_and_graphs_live_in_the_headroom() -> None:
    assert plan_memory(variant("llama-3.1-8b", "bf16", "h100", gpu_memory_utilization=0.98)).fits
    tight = plan_memory(variant("llama-3.1-8b", "bf16", "l4", gpu_memory_utilization=0.97))
    assert not tight.fits
    assert "lower gpu_memory_utilization" in tight.reason


def test_max_concurrent_sequences_is_the_tightest_limit() -> None:
    plan = plan_memory(variant("llama-3.1-8b", "bf16", "h100", max_model_len=32768))
    assert plan.max_concurrent_sequences(100) == 256  # max_num_seqs
    by_kv = plan.num_kv_blocks // (32768 // 16)
    assert plan.max_concurrent_sequences(32768) == by_kv < 256
    contexts = [256, 1024, 4096, 16384, 32768]
    counts = [plan.max_concurrent_sequences(c) for c in contexts]
    assert counts == sorted(counts, reverse=True)


def test_hybrids_hold_mamba_state_and_less_kv_per_token() -> None:
    teacher = plan_memory(variant("apriel-h1-teacher", "bf16", "h100", max_model_len=32768))
    hybrid = plan_memory(variant("apriel-h1-h30", "bf16", "h100", max_model_len=32768))
    assert teacher.mamba_state_bytes_per_sequence == 0
    assert teacher.mamba_state_slots == 256
    assert hybrid.kv_bytes_per_token == pytest.approx(teacher.kv_bytes_per_token * 20 / 50)
    # 30 layers x (4096 x 16 fp32 SSM state + (4096 + 32) x 3 conv window, 16-bit)
    assert hybrid.mamba_state_bytes_per_sequence == pytest.approx(30 * (4096 * 16 * 4 + 4128 * 3 * 2))
    assert hybrid.mamba_state_slots == 256
    assert hybrid.kv_cache_tokens > 2 * teacher.kv_cache_tokens
    assert hybrid.max_concurrent_sequences(16384) > 2 * teacher.max_concurrent_sequences(16384)


def test_mamba_slots_shrink_when_memory_is_tight() -> None:
    plan = plan_memory(
        variant("apriel-h1-h40", "bf16", "l40s", max_model_len=4096, max_num_seqs=4096, max_num_batched_tokens=8192)
    )
    assert plan.fits
    assert 0 < plan.mamba_state_slots < 4096
    assert plan.kv_cache_tokens >= 4096


def test_unsupported_format_does_not_fit() -> None:
    old = GPUSpec(
        name="t4",
        product="Tesla-T4",
        memory_gib=15,
        bandwidth_tbps=0.32,
        tflops={"bf16": 65},
        compute_capability=7.5,
        price_per_gpu_hour={"on_demand": 0.35},
    )
    v = variant("llama-3.1-8b", "int8", "l4").model_copy(update={"gpu": old})
    plan = plan_memory(v)
    assert not plan.fits
    assert "compute capability" in plan.reason


def test_fp8_on_ampere_runs_weight_only_and_keeps_the_memory_saving() -> None:
    v = variant("llama-3.1-8b", "fp8", "a100-80gb")
    assert v.weight_only_fallback
    assert (
        plan_memory(v).weight_bytes_per_gpu
        < plan_memory(variant("llama-3.1-8b", "bf16", "a100-80gb")).weight_bytes_per_gpu
    )


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"tensor_parallel": 3}, "power of two"),
        ({"tensor_parallel": 128}, "less than or equal"),
        ({"max_num_seqs": 512, "max_num_batched_tokens": 256}, "max_num_seqs"),
        ({"enable_chunked_prefill": False, "max_model_len": 16384}, "max_num_batched_tokens"),
        ({"online_quantization": True, "format": "int4"}, "online_quantization"),
    ],
    ids=["tp-3", "tp-128", "budget-below-seqs", "no-chunked-prefill", "online-int4"],
)
def test_bad_variants_are_rejected_with_the_field_named(knobs: dict[str, object], field: str) -> None:
    base = variant("llama-3.1-8b", "bf16", "h100").model_dump()
    base.update(knobs)
    with pytest.raises(ValidationError, match=field):
        Variant.model_validate(base)


def test_tp_must_divide_the_heads() -> None:
    base = variant("llama-3.1-8b", "bf16", get_gpu("h100").name).model_dump()
    base["tensor_parallel"] = 64
    with pytest.raises(ValidationError, match="attention heads"):
        Variant.model_validate(base)
