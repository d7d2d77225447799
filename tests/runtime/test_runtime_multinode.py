"""Replicas larger than one node: tensor parallel inside a node, pipeline stages across nodes."""

from __future__ import annotations

import pytest
from bakeoff_runtime.gpus import default_catalog, get_gpu
from bakeoff_runtime.perf import PerformanceModel, StepShape
from bakeoff_runtime.placement import place
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.vllm_args import vllm_args
from runtime_builders import variant

ENGINE = {"max_model_len": 4608, "max_num_batched_tokens": 512}


def _405b(gpus: int | None = None) -> Variant:
    placement = place(variant("llama-3.1-405b", "bf16", "h100", **ENGINE), gpus)
    assert placement.fits, placement.reason
    return placement.variant


def test_every_gpu_class_says_how_many_gpus_a_node_holds_and_how_nodes_connect() -> None:
    for gpu in default_catalog().gpus:
        assert gpu.gpus_per_node >= 1
        assert 0 < gpu.inter_node_gbps < gpu.interconnect_gbps


def test_sixteen_h100s_are_two_nodes_of_eight() -> None:
    v = _405b(16)
    assert (v.tensor_parallel, v.pipeline_parallel, v.num_gpus) == (8, 2, 16)
    assert v.multi_node
    assert v.hourly_price() == pytest.approx(16 * get_gpu("h100").hourly_price())
    assert "--pipeline-parallel-size=2" in vllm_args(v)
    assert "--tensor-parallel-size=8" in vllm_args(v)
    one_node = place(variant("llama-3.1-405b", "fp8", "h100", **ENGINE), 8).variant
    assert not any(a.startswith("--pipeline-parallel-size") for a in vllm_args(one_node))


def test_auto_placement_fills_a_node_before_adding_stages() -> None:
    assert _405b().num_gpus == 16  # 405B BF16 does not fit 8 H100s
    assert place(variant("llama-3.1-405b", "bf16", "h200", **ENGINE)).variant.num_gpus == 8
    with pytest.raises(ValueError, match="multiple of 8"):
        place(variant("llama-3.1-405b", "bf16", "h100", **ENGINE), 12)


def test_one_sequence_waits_for_every_stage_in_turn() -> None:
    """The pipeline bubble: alone, a token crosses both stages one after the other, so 2 stages of 8 decode
    about 2x slower than one NVLink domain of 16 would (which vLLM cannot build from two nodes)."""
    staged = _405b(16)
    one_domain = staged.model_copy(
        update={
            "tensor_parallel": 16,
            "pipeline_parallel": 1,
            "gpu": get_gpu("h100").model_copy(update={"gpus_per_node": 16}),
        }
    )
    staged_itl = PerformanceModel(staged).sync_latency(256, 1024).itl_s
    domain_itl = PerformanceModel(one_domain).sync_latency(256, 1024).itl_s
    assert 1.8 < staged_itl / domain_itl < 2.2


def test_micro_batches_keep_every_stage_busy_under_continuous_batching() -> None:
    staged = PerformanceModel(_405b(16))
    alone = staged.step_time(StepShape(decode_sequences=1, decode_context_tokens=1024))
    batch = staged.step_time(StepShape(decode_sequences=256, decode_context_tokens=256 * 1024))
    assert batch < 1.5 * alone  # 256 sequences in 2 micro-batches cost little more than one alone
    assert "pipeline_send" in staged.step_breakdown(StepShape(decode_sequences=8, decode_context_tokens=8000))


def test_tensor_parallel_across_nodes_is_bound_by_the_network() -> None:
    h100 = get_gpu("h100")
    v = _405b(16).model_copy(update={"tensor_parallel": 16, "pipeline_parallel": 1})
    shape = StepShape(decode_sequences=256, decode_context_tokens=256 * 1024)
    network = PerformanceModel(v).step_breakdown(shape)["all_reduce"]
    nvlink = PerformanceModel(v.model_copy(update={"gpu": h100.model_copy(update={"gpus_per_node": 16})}))
    assert network > 5 * nvlink.step_breakdown(shape)["all_reduce"]
