"""What one simulator process serves: its settings, and the engine's inputs derived from the variant
(step times from the performance model, scheduler limits from the memory plan, cache labels)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.memory import plan_memory
from bakeoff_runtime.perf import PerformanceModel, StepShape
from bakeoff_runtime.sim.engine import Faults, StepTimeFn
from bakeoff_runtime.sim.scheduler import SchedulerLimits, StepCounts
from bakeoff_runtime.variant import Variant


class SimSettings(BaseModel):
    """How one simulator process serves its variant (beyond the variant's own knobs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_root: str = Field(default="", max_length=1024, description="What `/v1/models` reports as `root`.")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed for generated words, ids and faults.")
    faults: Faults = Field(default_factory=Faults, description="Fault injection.")


def performance_step_time(variant: Variant) -> StepTimeFn:
    """The performance model's step time for `variant`, as the engine's step-time function."""
    model = PerformanceModel(variant)

    def step_time(counts: StepCounts) -> float:
        return model.step_time(
            StepShape(
                prefill_tokens=counts.prefill_tokens,
                prefill_attention_pairs=counts.prefill_attention_pairs,
                decode_sequences=counts.decode_sequences,
                decode_context_tokens=counts.decode_context_tokens,
            )
        )

    return step_time


def scheduler_limits(variant: Variant) -> SchedulerLimits:
    """KV blocks and Mamba state slots from the memory plan; raises ValueError when it does not fit."""
    plan = plan_memory(variant)
    if not plan.fits or plan.num_kv_blocks <= 0:
        raise ValueError(f"variant {variant.name} does not fit on {variant.gpu.name}: {plan.reason}")
    return SchedulerLimits(
        max_num_seqs=variant.max_num_seqs,
        max_num_batched_tokens=variant.max_num_batched_tokens,
        num_kv_blocks=plan.num_kv_blocks,
        block_size=variant.block_size,
        mamba_state_slots=plan.mamba_state_slots if variant.is_hybrid else None,
        max_model_len=variant.max_model_len,
    )


def cache_config_labels(variant: Variant, limits: SchedulerLimits) -> dict[str, str]:
    """The `vllm:cache_config_info` labels the simulator can state truthfully (a subset of vLLM's)."""
    return {
        "block_size": str(limits.block_size),
        "cache_dtype": variant.kv_cache_dtype.value,
        "enable_prefix_caching": "False",
        "gpu_memory_utilization": str(variant.gpu_memory_utilization),
        "num_gpu_blocks": str(limits.num_kv_blocks),
        "kv_cache_size_tokens": str(limits.num_kv_blocks * limits.block_size),
        "mamba_ssm_cache_dtype": variant.resolved_mamba_ssm_cache_dtype if variant.is_hybrid else "auto",
    }
