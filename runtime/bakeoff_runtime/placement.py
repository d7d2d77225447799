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
- parallelism: tensor parallel inside a node, pipeline parallel across nodes, as vLLM runs a model
  too large for one node. Given a GPU count, up to the GPU class's `gpus_per_node` it is the
  tensor-parallel size; beyond, one node's worth of GPUs per pipeline stage (16 H100s: 2 stages of
  8). Else the fewest GPUs that fit weights, reserve and one full-length sequence: a power of two
  dividing the heads up to one node, then whole nodes as pipeline stages, up to
  `MAX_AUTO_PIPELINE_PARALLEL` of them. A variant with more than one stage is a multi-node variant.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.memory import MemoryPlan, min_tensor_parallel, plan_memory
from bakeoff_runtime.variant import Variant, valid_tensor_parallel_sizes

DEFAULT_MAX_MODEL_LEN: Final = 8192
MIN_BATCHED_TOKENS: Final = 8192
MAX_DEFAULT_BATCHED_TOKENS: Final = 16384
MAX_AUTO_PIPELINE_PARALLEL: Final = 4  # nodes: beyond, pipeline bubbles and the network dominate


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
    """A variant placed on GPUs of its class (tensor parallel in a node, pipeline stages across nodes), or
    why it cannot be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fits: bool
    variant: Variant = Field(description="The variant at the chosen (or, when nothing fits, the largest tried) size.")
    memory: MemoryPlan
    reason: str = Field(description="Why it fits, or why not and what to change.")
    auto: bool = Field(description="The size was chosen by the policy, not given.")

    @property
    def multi_node(self) -> bool:
        return self.variant.multi_node


def node_tensor_parallel(base: Variant) -> int:
    """The widest tensor-parallel group inside one node of the variant's GPU class."""
    return valid_tensor_parallel_sizes(base.architecture, base.gpu.gpus_per_node)[-1]


def split_across_nodes(base: Variant, gpus: int) -> tuple[int, int]:
    """(tensor parallel, pipeline stages) for `gpus` GPUs: one node's GPUs per stage beyond one node.

    Raises ValueError when `gpus` is not a whole number of nodes' tensor-parallel groups.
    """
    per_node = base.gpu.gpus_per_node
    if gpus <= per_node:
        return gpus, 1
    tp = node_tensor_parallel(base)
    if gpus % tp:
        raise ValueError(
            f"{gpus} GPUs of {base.gpu.name} span nodes of {per_node}: use a multiple of {tp} (tensor parallel "
            f"{tp} inside each node, one pipeline stage per node)"
        )
    return tp, gpus // tp


def place(base: Variant, tensor_parallel: int | None = None) -> Placement:
    """Place `base` on `tensor_parallel` GPUs of its class, or on the fewest that fit when None.

    A count above one node's GPUs runs as pipeline stages of one node each. Raises ValueError when a
    given count is one the model cannot take (heads not divisible, not a whole number of nodes).
    """
    gpu = base.gpu.name
    if tensor_parallel is None:
        return _place_auto(base)
    tp, pp = split_across_nodes(base, tensor_parallel)
    variant = Variant.model_validate({**base.model_dump(), "tensor_parallel": tp, "pipeline_parallel": pp})
    plan = plan_memory(variant)
    if not plan.fits:
        return Placement(fits=False, variant=variant, memory=plan, reason=plan.reason, auto=False)
    return Placement(
        fits=True, variant=variant, memory=plan, reason=f"fits {_size(variant)} {gpu}: {plan.reason}", auto=False
    )


def _size(variant: Variant) -> str:
    if variant.multi_node:
        return f"{variant.num_gpus}x ({variant.pipeline_parallel} pipeline stages of {variant.tensor_parallel})"
    return f"{variant.tensor_parallel}x"


def _place_auto(base: Variant) -> Placement:
    gpu = base.gpu.name
    one_stage = base.model_copy(update={"pipeline_parallel": 1})
    tp = min_tensor_parallel(one_stage, base.gpu.gpus_per_node)
    if tp is not None:
        candidates = [one_stage.model_copy(update={"tensor_parallel": tp})]
    else:
        node_tp = node_tensor_parallel(base)
        stages = range(2, min(MAX_AUTO_PIPELINE_PARALLEL, base.architecture.num_layers) + 1)
        candidates = [
            one_stage.model_copy(update={"tensor_parallel": node_tp, "pipeline_parallel": pp}) for pp in stages
        ]
        candidates = candidates or [one_stage.model_copy(update={"tensor_parallel": node_tp})]
    for variant in candidates:
        plan = plan_memory(variant)
        if plan.fits:
            return Placement(
                fits=True, variant=variant, memory=plan, reason=f"fits {_size(variant)} {gpu}: {plan.reason}", auto=True
            )
    widest = candidates[-1]
    plan = plan_memory(widest)
    reason = (
        f"does not fit {_size(widest)} {gpu} either ({plan.reason}); choose a GPU class with more "
        "memory, a smaller format or a shorter max model length"
    )
    return Placement(fits=False, variant=widest, memory=plan, reason=reason, auto=True)
