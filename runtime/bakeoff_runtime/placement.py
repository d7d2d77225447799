"""The sizing policy: the serving defaults of a variant and its tensor-parallel size on one GPU class.

One policy for every caller: `bakeoff predict`, a ModelVariant's status, the KServe deployment and a
local bake-off all size a variant through these functions, so the same variant gets the same
placement and the same prediction wherever it is asked about.

- `max_model_len`: what the variant sets; else, for a what-if sized for one workload (`bakeoff
  predict`), exactly room for that workload's requests (prompt + output, rounded up to a 16-token KV
  block), as the published studies served their models; else, for a variant deployed to serve whatever
  comes (a ModelVariant in a cluster or a local bake-off, which deploys it the same way),
  `DEFAULT_MAX_MODEL_LEN` (vLLM would otherwise take the model's full context, which rarely fits next
  to the weights). A workload longer than a deployed variant's length is refused by the bake-off plan.
- `max_num_batched_tokens`: what the variant sets, else `max_model_len` clamped to 8192..16384 (vLLM
  V1's chunked-prefill budget on large GPUs is 8192; a long context gets a larger chunk).
- tensor parallelism: what the variant sets, else the fewest GPUs (a power of two dividing the heads,
  at most `MAX_AUTO_TENSOR_PARALLEL`, one node) at which weights, reserve and one full-length sequence
  fit.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.memory import MemoryPlan, min_tensor_parallel, plan_memory
from bakeoff_runtime.variant import Variant

DEFAULT_MAX_MODEL_LEN: Final = 8192
MIN_BATCHED_TOKENS: Final = 8192
MAX_DEFAULT_BATCHED_TOKENS: Final = 16384
MAX_AUTO_TENSOR_PARALLEL: Final = 8


KV_BLOCK_TOKENS: Final = 16


def default_max_model_len(context_tokens: int | None = None) -> int:
    """Room for requests of `context_tokens` (prompt + output) in whole KV blocks; 8192 when not sized
    for one workload."""
    if context_tokens is None:
        return DEFAULT_MAX_MODEL_LEN
    return max(KV_BLOCK_TOKENS, -(-context_tokens // KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS)


def default_max_num_batched_tokens(max_model_len: int) -> int:
    """The chunked-prefill step budget for `max_model_len`: the length clamped to 8192..16384."""
    return max(MIN_BATCHED_TOKENS, min(max_model_len, MAX_DEFAULT_BATCHED_TOKENS))


class Placement(BaseModel):
    """A variant placed on `tensor_parallel` GPUs of its class, or why it cannot be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fits: bool
    variant: Variant = Field(description="The variant at the chosen (or, when nothing fits, the largest tried) size.")
    memory: MemoryPlan
    reason: str = Field(description="Why it fits, or why not and what to change.")
    auto: bool = Field(description="The tensor-parallel size was chosen by the policy, not given.")


def place(base: Variant, tensor_parallel: int | None = None) -> Placement:
    """Place `base` on its GPU class at `tensor_parallel` GPUs, or at the fewest that fit when None.

    Raises ValueError when a given `tensor_parallel` is one the model cannot take (heads not divisible).
    """
    gpu = base.gpu.name
    if tensor_parallel is None:
        tp = min_tensor_parallel(base, MAX_AUTO_TENSOR_PARALLEL)
        if tp is None:
            widest = base.model_copy(update={"tensor_parallel": MAX_AUTO_TENSOR_PARALLEL})
            plan = plan_memory(widest)
            reason = (
                f"does not fit {MAX_AUTO_TENSOR_PARALLEL}x {gpu} either ({plan.reason}); choose a GPU class with more "
                "memory, a smaller format or a shorter max model length"
            )
            return Placement(fits=False, variant=widest, memory=plan, reason=reason, auto=True)
        variant = base.model_copy(update={"tensor_parallel": tp})
    else:
        variant = Variant.model_validate({**base.model_dump(), "tensor_parallel": tensor_parallel})
    plan = plan_memory(variant)
    if not plan.fits:
        return Placement(fits=False, variant=variant, memory=plan, reason=plan.reason, auto=tensor_parallel is None)
    return Placement(
        fits=True,
        variant=variant,
        memory=plan,
        reason=f"fits {variant.tensor_parallel}x {gpu}: {plan.reason}",
        auto=tensor_parallel is None,
    )
