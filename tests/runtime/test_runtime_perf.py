"""The performance model off the anchors: physically sensible on configurations nobody calibrated."""

from __future__ import annotations

import itertools

import pytest
from bakeoff_runtime.perf import DEFAULT_EFFICIENCY, KernelFamily, PerformanceModel, StepShape, kernel_family
from bakeoff_runtime.workloads import WORKLOADS
from runtime_builders import perf, variant


def _decode_tokens_per_s(pm: PerformanceModel, context: int = 512) -> float:
    return 1 / pm.decode_step_time(1, context)


def test_8b_bf16_on_h100_streams_like_vllm_does_single_stream() -> None:
    # Roofline is ~210 tok/s (16 GB per token at 3.35 TB/s); vLLM reaches a bit over half to two thirds.
    assert 80 <= _decode_tokens_per_s(perf("llama-3.1-8b", "bf16", "h100")) <= 160


@pytest.mark.parametrize("fmt", ["bf16", "fp8", "int4"])
def test_l4_is_slower_than_l40s(fmt: str) -> None:
    l4, l40s = perf("llama-3.1-8b", fmt, "l4"), perf("llama-3.1-8b", fmt, "l40s")
    w = WORKLOADS["code-fixing"]
    assert (
        l4.sync_latency(w.prompt_tokens, w.output_tokens).e2e_s
        > l40s.sync_latency(w.prompt_tokens, w.output_tokens).e2e_s
    )
    assert (
        l4.saturation(w.prompt_tokens, w.output_tokens).max_qps
        < l40s.saturation(w.prompt_tokens, w.output_tokens).max_qps
    )


@pytest.mark.parametrize(("model", "fmt"), [("llama-3.1-8b", "bf16"), ("llama-3.1-70b", "fp8")])
def test_h200_decodes_faster_than_h100(model: str, fmt: str) -> None:
    assert _decode_tokens_per_s(perf(model, fmt, "h200")) > 1.2 * _decode_tokens_per_s(perf(model, fmt, "h100"))


def test_tensor_parallel_scaling_is_sub_linear() -> None:
    w = WORKLOADS["code-completion"]
    latency = {tp: perf("llama-3.1-70b", "bf16", "h100", tp).sync_latency(256, 1024).e2e_s for tp in (2, 4, 8)}
    assert latency[2] > latency[4] > latency[8]
    assert latency[2] / latency[4] < 2
    assert latency[4] / latency[8] < latency[2] / latency[4]
    per_gpu = {
        tp: perf("llama-3.1-70b", "bf16", "h100", tp).saturation(w.prompt_tokens, w.output_tokens).max_qps / tp
        for tp in (4, 8)
    }
    assert per_gpu[8] < per_gpu[4]


def test_w4a16_loses_its_lead_as_the_batch_grows() -> None:
    int4, fp8 = perf("llama-3.1-70b", "int4", "h100", 2), perf("llama-3.1-70b", "fp8", "h100", 2)
    assert int4.decode_step_time(1, 1024) < fp8.decode_step_time(1, 1024)
    assert int4.decode_step_time(256, 1024) > fp8.decode_step_time(256, 1024)


def test_weight_only_fallback_uses_marlin_and_16_bit_compute() -> None:
    v = variant("llama-3.1-8b", "fp8", "a100-80gb")
    assert kernel_family(v.format, v.gpu.compute_capability, v.execution.mode).value == "marlin"
    native = perf("llama-3.1-8b", "int8", "a100-80gb")
    fallback = PerformanceModel(v)
    big = StepShape(prefill_tokens=8192, prefill_attention_pairs=8192 * 4096)
    assert fallback.step_time(big) > native.step_time(big)


def test_prefill_is_compute_bound_and_decode_memory_bound() -> None:
    pm = perf("llama-3.1-8b", "bf16", "h100")
    prefill = pm.step_breakdown(StepShape(prefill_tokens=8192, prefill_attention_pairs=8192 * 8193 / 2))
    decode = pm.step_breakdown(StepShape(decode_sequences=1, decode_context_tokens=1024))
    flops = 2 * 8.03e9 * 8192
    eff = DEFAULT_EFFICIENCY
    assert prefill["linear"] == pytest.approx(flops / (989e12 * eff.compute[KernelFamily.BF16]), rel=0.15)
    assert decode["linear"] == pytest.approx(6.98e9 * 2 / (3.35e12 * eff.weight_bandwidth[KernelFamily.BF16]), rel=0.01)


def test_empty_step_takes_no_time_and_any_work_takes_some() -> None:
    pm = perf("llama-3.1-8b", "bf16", "h100")
    assert pm.step_time(StepShape()) == 0
    assert pm.step_time(StepShape(decode_sequences=1, decode_context_tokens=1)) > 0
    assert pm.step_time(StepShape(prefill_tokens=1, prefill_attention_pairs=1)) > 0


SHAPES = [
    {"prefill_tokens": p, "decode_sequences": d, "decode_context_tokens": d * c}
    for p, d, c in itertools.product([0, 64, 2048], [0, 1, 32, 256], [128, 4096])
    if p or d
]


@pytest.mark.parametrize("field", ["prefill_tokens", "decode_sequences", "decode_context_tokens"])
@pytest.mark.parametrize("model", ["llama-3.1-70b-fp8-tp2", "apriel-h1-h30-bf16"])
def test_step_time_is_monotonic(field: str, model: str) -> None:
    pm = perf("llama-3.1-70b", "fp8", "h100", 2) if model.startswith("llama") else perf("apriel-h1-h30", "bf16", "h100")
    for shape in SHAPES:
        base = dict(shape)
        base["prefill_attention_pairs"] = base["prefill_tokens"] * (base["prefill_tokens"] + 1) / 2
        more = dict(base)
        more[field] = int(more[field] * 2 + 16)
        if field == "prefill_tokens":
            more["prefill_attention_pairs"] = more["prefill_tokens"] * (more["prefill_tokens"] + 1) / 2
        if field == "decode_sequences" and not more["decode_context_tokens"]:
            more["decode_context_tokens"] = more["decode_sequences"]
        assert pm.step_time(StepShape(**more)) >= pm.step_time(StepShape(**base)), (field, shape)


def test_sync_latency_is_monotonic_in_prompt_and_output() -> None:
    pm = perf("llama-3.1-8b", "int4", "l40s")
    outputs = [pm.sync_latency(512, o).e2e_s for o in (1, 16, 128, 1024)]
    prompts = [pm.sync_latency(p, 128).ttft_s for p in (16, 512, 4096, 16384)]
    assert outputs == sorted(outputs)
    assert prompts == sorted(prompts)


def test_throughput_grows_with_allowed_concurrency_and_saturates() -> None:
    qps = [perf("llama-3.1-8b", "bf16", "h100", max_num_seqs=n).saturation(512, 256).max_qps for n in (1, 8, 64, 256)]
    assert qps == sorted(qps)
    assert qps[-1] / qps[-2] < qps[1] / qps[0]


def test_qps_at_slo_is_below_saturation_and_tightens_with_the_slo() -> None:
    pm = perf("llama-3.1-8b", "fp8", "h100")
    sat = pm.saturation(512, 256).max_qps
    loose = pm.qps_at_slo(512, 256, ttft_s=2.0, itl_s=0.05)
    tight = pm.qps_at_slo(512, 256, ttft_s=0.2, itl_s=0.012)
    assert 0 < tight < loose <= sat
    assert pm.qps_at_slo(512, 256, itl_s=0.001) == 0


def test_prediction_costs_follow_the_price() -> None:
    pm = perf("llama-3.1-70b", "fp8", "h100", 2)
    w = WORKLOADS["rag"]
    base = pm.predict(w, "async")
    double = pm.predict(w, "async", price_per_gpu_hour=2 * 3.29)
    assert base.cost_per_1m_output_tokens_usd is not None
    assert double.cost_per_1m_output_tokens_usd == pytest.approx(2 * base.cost_per_1m_output_tokens_usd)
    assert base.output_tokens_per_s_per_gpu == pytest.approx(base.max_qps * 128 / 2)  # type: ignore[operator]
    per_query = base.cost_per_query_usd
    assert per_query == pytest.approx(2 * 3.29 / 3600 / base.max_qps)  # type: ignore[operator]


def test_prediction_of_a_variant_that_does_not_fit_has_no_figures() -> None:
    p = perf("llama-3.1-70b", "bf16", "l4").predict(WORKLOADS["rag"], "sync")
    assert not p.fits
    assert p.latency_s is None
    assert p.cost_per_1m_output_tokens_usd is None
    assert "GiB" in p.reason


def test_prompt_longer_than_max_model_len_is_reported() -> None:
    p = perf("llama-3.1-8b", "bf16", "h100", max_model_len=2048).predict(WORKLOADS["summarization"], "sync")
    assert not p.fits
    assert "max_model_len" in p.reason


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        perf("llama-3.1-8b", "bf16", "h100").predict(WORKLOADS["rag"], "batch")
