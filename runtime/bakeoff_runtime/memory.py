"""Memory fit of a variant: does it load, how much KV cache and Mamba state is left, how many
sequences run at once.

The accounting follows what vLLM does at start-up, per GPU (tensor-parallel rank):

    budget = gpu_memory_utilization × device memory
    free   = budget − weights − reserve
    free  → Mamba state slots (hybrids) → KV cache blocks of `block_size` tokens

* Weights: decoder-block parameters × the format's bytes per weight (group scales included); the
  embeddings and the LM head stay 16-bit. Everything is sharded evenly across tensor-parallel ranks
  (vLLM's column/row-parallel linears and vocab-parallel embedding).
* Reserve: what vLLM's profiling run finds inside the budget besides weights (`ReserveModel`): the
  non-torch memory it allocates after its start-up snapshot (cuBLAS workspaces, allocator slack), the
  activation peak of one step of `max_num_batched_tokens` tokens (the larger of the MLP and the mixer
  phase), the sampler's fp32 logits for `max_num_seqs` sequences, and NCCL buffers when the replica
  spans GPUs. The CUDA context predates vLLM's snapshot and the CUDA graphs are captured after the KV
  cache is allocated: both come out of the headroom above `gpu_memory_utilization`, which must hold
  them.
* KV cache: K and V per token per attention layer in the KV dtype; KV heads are split across ranks
  (replicated when there are more ranks than KV heads).
* Mamba state: per sequence and constant in context length; the SSM state in
  `mamba_ssm_cache_dtype`, the conv window 16-bit. Slots for `max_num_seqs` sequences are set aside
  first (one slot per running sequence, as vLLM's Mamba cache does); if that leaves no room for one
  `max_model_len` context, the slots shrink to what leaves room for it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.architectures import MambaCacheDtype
from bakeoff_runtime.formats import FORMATS, KV_CACHE_BYTES
from bakeoff_runtime.gpus import GIB
from bakeoff_runtime.variant import Variant, valid_tensor_parallel_sizes

MAMBA_SSM_BYTES: dict[MambaCacheDtype, float] = {"auto": 2.0, "float32": 4.0, "float16": 2.0, "bfloat16": 2.0}
MAMBA_CONV_BYTES = 2.0  # vLLM keeps the conv window in the model dtype
ACTIVATION_BYTES = 2.0  # activations run 16-bit in every format (W8A8 quantizes them inside the matmul)
LOGITS_BYTES = 4.0  # the sampler upcasts logits to fp32


class ReserveModel(BaseModel):
    """Per-GPU memory vLLM holds besides weights, KV cache and Mamba state (see docs/performance-model.md).

    Inside the budget (`gpu_memory_utilization` x memory): what vLLM's profiling run measures. Outside it,
    in the headroom: the CUDA context (created before vLLM's memory snapshot) and the CUDA-graph pools
    (captured after the KV cache is allocated).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    non_torch_gib: float = Field(
        default=0.25,
        ge=0,
        le=16,
        description="Non-torch memory allocated after vLLM's start-up snapshot: cuBLAS/cuBLASLt workspaces, "
        "allocator slack.",
    )
    nccl_gib: float = Field(
        default=0.5, ge=0, le=16, description="NCCL and custom all-reduce buffers, only when a replica spans GPUs."
    )
    logits_copies: float = Field(default=2.0, ge=1, le=8, description="fp32 logits and probabilities.")
    cuda_context_gib: float = Field(
        default=0.5, ge=0, le=16, description="CUDA context and loaded kernels: in the headroom, not the budget."
    )
    cuda_graph_gib: float = Field(
        default=0.75,
        ge=0,
        le=16,
        description="CUDA-graph pools of the decode graphs, captured after the KV cache: in the headroom.",
    )


DEFAULT_RESERVE = ReserveModel()


class MemoryPlan(BaseModel):
    """Where each GPU's memory goes for one variant, and what that allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fits: bool = Field(description="True when the variant loads and holds at least one max_model_len context.")
    reason: str = Field(description="Why it fits or not, with the figures.")
    tensor_parallel: int = Field(ge=1, description="GPUs each layer is split across.")
    pipeline_parallel: int = Field(default=1, ge=1, description="Pipeline stages (one tensor-parallel group each).")
    budget_bytes_per_gpu: float = Field(ge=0, description="gpu_memory_utilization × device memory.")
    weight_bytes_per_gpu: float = Field(ge=0, description="Weights on each rank.")
    reserve_bytes_per_gpu: float = Field(
        ge=0, description="Inside the budget besides weights: activation peak, logits, workspaces, NCCL, per rank."
    )
    margin_bytes_per_gpu: float = Field(
        description="KV cache memory per rank beyond one max_model_len context (0 when it does not fit)."
    )
    kv_bytes_per_token: float = Field(ge=0, description="Whole model (all attention layers), this KV dtype.")
    kv_bytes_per_token_per_gpu: float = Field(ge=0, description="One rank's share (KV heads split or replicated).")
    mamba_state_bytes_per_sequence: float = Field(ge=0, description="Whole model, 0 for dense.")
    mamba_state_bytes_per_sequence_per_gpu: float = Field(ge=0, description="One rank's share.")
    mamba_state_bytes: float = Field(ge=0, description="Mamba state set aside, per replica (all ranks).")
    kv_cache_bytes: float = Field(ge=0, description="KV cache per replica (all ranks together).")
    block_size: int = Field(ge=1, description="Tokens per KV block.")
    num_kv_blocks: int = Field(ge=0, description="Per replica, of `block_size` tokens.")
    mamba_state_slots: int = Field(ge=0, description="Sequences whose Mamba state fits (== max_num_seqs for dense).")
    max_num_seqs: int = Field(ge=1, description="The engine's own cap on running sequences.")
    max_model_len: int = Field(ge=1, description="Longest context the variant is configured for.")

    @property
    def kv_cache_tokens(self) -> int:
        return self.num_kv_blocks * self.block_size

    def max_concurrent_sequences(self, context_tokens: int) -> int:
        """Sequences of `context_tokens` that run at once: min of KV blocks, Mamba slots, max_num_seqs."""
        if not self.fits:
            return 0
        blocks_per_sequence = max(1, math.ceil(max(1, context_tokens) / self.block_size))
        return max(0, min(self.num_kv_blocks // blocks_per_sequence, self.mamba_state_slots, self.max_num_seqs))

    def summary(self) -> dict[str, Any]:
        """Figures in GiB for people."""
        return {
            "fits": self.fits,
            "tensor_parallel": self.tensor_parallel,
            "pipeline_parallel": self.pipeline_parallel,
            "weights_gib_per_gpu": round(self.weight_bytes_per_gpu / GIB, 2),
            "reserve_gib_per_gpu": round(self.reserve_bytes_per_gpu / GIB, 2),
            "margin_gib_per_gpu": round(self.margin_bytes_per_gpu / GIB, 2),
            "kv_cache_gib": round(self.kv_cache_bytes / GIB, 2),
            "kv_cache_tokens": self.kv_cache_tokens,
            "mamba_state_slots": self.mamba_state_slots,
            "reason": self.reason,
        }


def weight_bytes(variant: Variant) -> float:
    """Whole-model weight bytes: quantized decoder blocks plus 16-bit embeddings and LM head."""
    arch = variant.architecture
    spec = FORMATS[variant.format]
    return arch.body_params * spec.weight_bytes + (arch.embedding_params + arch.lm_head_params) * spec.lm_head_bytes


def weight_bytes_per_gpu(variant: Variant) -> float:
    """Weights on the fullest rank: a stage's share of the decoder blocks, split across its tensor-parallel
    group, plus the 16-bit embedding (first stage) and LM head (last stage), both on one stage when there is
    only one."""
    arch = variant.architecture
    spec = FORMATS[variant.format]
    ends = arch.embedding_params + arch.lm_head_params
    if variant.pipeline_parallel > 1:
        ends = max(arch.embedding_params, arch.lm_head_params)
    body = arch.body_params * spec.weight_bytes / variant.pipeline_parallel
    return (body + ends * spec.lm_head_bytes) / variant.tensor_parallel


def layers_per_stage(count: int, stages: int) -> int:
    """Layers of one kind on the fullest pipeline stage."""
    return math.ceil(count / stages) if count else 0


def kv_heads_per_gpu(variant: Variant) -> int:
    heads = variant.architecture.num_kv_heads
    return max(1, math.ceil(heads / variant.tensor_parallel))


def kv_bytes_per_token_per_gpu(variant: Variant) -> float:
    """One rank's KV bytes per token: its stage's attention layers, its share of the KV heads."""
    arch = variant.architecture
    layers = layers_per_stage(arch.attention_layers, variant.pipeline_parallel)
    per_head = 2 * layers * arch.head_dim * KV_CACHE_BYTES[variant.kv_cache_dtype]
    return per_head * kv_heads_per_gpu(variant)


def mamba_state_bytes_per_sequence(variant: Variant) -> float:
    """Whole-model Mamba state of one sequence."""
    ssm_bytes = MAMBA_SSM_BYTES[variant.resolved_mamba_ssm_cache_dtype]
    return variant.architecture.mamba_state_bytes_per_sequence(ssm_bytes, MAMBA_CONV_BYTES)


def mamba_state_bytes_per_sequence_per_gpu(variant: Variant) -> float:
    """One rank's Mamba state of one sequence: its stage's Mamba layers, split across tensor parallel."""
    arch = variant.architecture
    if not arch.mamba_layers:
        return 0.0
    share = layers_per_stage(arch.mamba_layers, variant.pipeline_parallel) / arch.mamba_layers
    return mamba_state_bytes_per_sequence(variant) * share / variant.tensor_parallel


def activation_peak_bytes_per_gpu(variant: Variant) -> float:
    """Activations alive at the peak of one step of `max_num_batched_tokens` tokens, on one rank.

    Besides the residual stream and the normed input (2 x hidden), the largest phase holds: in the gated
    MLP its gate/up output and the activated product (3 x intermediate / TP); in attention the QKV
    projection and the attention output; in a Mamba mixer its in-projection (about 4 x d_inner / TP).
    """
    arch = variant.architecture
    tp = variant.tensor_parallel
    mlp = 3 * arch.intermediate_size / tp
    q = arch.num_attention_heads * arch.head_dim
    attention = (2 * q + 2 * arch.num_kv_heads * arch.head_dim) / tp if arch.attention_layers else 0.0
    mamba = 4 * arch.mamba_d_inner / tp if arch.mamba_layers else 0.0
    return variant.max_num_batched_tokens * (2 * arch.hidden_size + max(mlp, attention, mamba)) * ACTIVATION_BYTES


def reserve_bytes_per_gpu(variant: Variant, reserve: ReserveModel = DEFAULT_RESERVE) -> float:
    """What vLLM's profiling run keeps back inside the budget on one rank (not the CUDA context or graphs)."""
    arch = variant.architecture
    # The sampler sees the whole vocabulary: vocab-parallel logits are gathered before sampling.
    logits = variant.max_num_seqs * arch.vocab_size * LOGITS_BYTES * reserve.logits_copies
    fixed = reserve.non_torch_gib + (reserve.nccl_gib if variant.num_gpus > 1 else 0.0)
    return fixed * GIB + activation_peak_bytes_per_gpu(variant) + logits


def headroom_needed_bytes_per_gpu(reserve: ReserveModel = DEFAULT_RESERVE) -> float:
    """What must fit above `gpu_memory_utilization`: the CUDA context and the CUDA-graph pools."""
    return (reserve.cuda_context_gib + reserve.cuda_graph_gib) * GIB


def plan_memory(variant: Variant, reserve: ReserveModel = DEFAULT_RESERVE) -> MemoryPlan:
    """Where each GPU's memory goes, and whether the variant fits (with the reason)."""
    tp = variant.tensor_parallel
    gpus = variant.num_gpus
    arch = variant.architecture
    budget = variant.gpu.memory_bytes * variant.gpu_memory_utilization
    headroom = variant.gpu.memory_bytes - budget
    weights = weight_bytes_per_gpu(variant)
    reserved = reserve_bytes_per_gpu(variant, reserve)
    kv_token_gpu = kv_bytes_per_token_per_gpu(variant)
    kv_token = arch.kv_bytes_per_token(KV_CACHE_BYTES[variant.kv_cache_dtype])
    state_seq = mamba_state_bytes_per_sequence(variant)
    state_seq_gpu = mamba_state_bytes_per_sequence_per_gpu(variant)
    free = budget - weights - reserved
    block_bytes_gpu = kv_token_gpu * variant.block_size
    # One full-length context must fit beside the Mamba slots, or vLLM refuses to start.
    context_bytes_gpu = math.ceil(variant.max_model_len / variant.block_size) * block_bytes_gpu

    common: dict[str, Any] = {
        "tensor_parallel": tp,
        "pipeline_parallel": variant.pipeline_parallel,
        "budget_bytes_per_gpu": budget,
        "weight_bytes_per_gpu": weights,
        "reserve_bytes_per_gpu": reserved,
        "kv_bytes_per_token": kv_token,
        "kv_bytes_per_token_per_gpu": kv_token_gpu,
        "mamba_state_bytes_per_sequence": state_seq,
        "mamba_state_bytes_per_sequence_per_gpu": state_seq_gpu,
        "block_size": variant.block_size,
        "max_num_seqs": variant.max_num_seqs,
        "max_model_len": variant.max_model_len,
    }

    def no_fit(reason: str) -> MemoryPlan:
        return MemoryPlan(
            fits=False,
            reason=reason,
            margin_bytes_per_gpu=0.0,
            mamba_state_bytes=0.0,
            kv_cache_bytes=0.0,
            num_kv_blocks=0,
            mamba_state_slots=0,
            **common,
        )

    gpu_label = f"{gpus}× {variant.gpu.name}" + (f" ({variant.pipeline_parallel} stages of {tp})" if gpus > tp else "")
    execution = variant.execution
    if not execution.runs:
        return no_fit(execution.reason)
    needed = headroom_needed_bytes_per_gpu(reserve)
    if headroom < needed:
        return no_fit(
            f"gpu_memory_utilization {variant.gpu_memory_utilization:g} leaves {headroom / GIB:.2f} GiB per GPU "
            f"above the budget on {gpu_label}, less than the CUDA context and CUDA graphs need "
            f"({needed / GIB:.2f} GiB): lower gpu_memory_utilization"
        )
    if free <= 0:
        return no_fit(
            f"weights {weights / GIB:.1f} GiB + reserve {reserved / GIB:.1f} GiB per GPU exceed the "
            f"{budget / GIB:.1f} GiB budget ({variant.gpu_memory_utilization:g} × {variant.gpu.memory_gib:g} GiB) "
            f"on {gpu_label}: use more GPUs (tensor parallel), a smaller format or a larger GPU class"
        )
    if state_seq_gpu > 0:
        slots = variant.max_num_seqs
        if slots * state_seq_gpu > free - context_bytes_gpu:
            slots = max(0, math.floor((free - context_bytes_gpu) / state_seq_gpu))
    else:
        slots = variant.max_num_seqs
    if slots < 1:
        return no_fit(
            f"after weights ({weights / GIB:.1f} GiB) and reserve ({reserved / GIB:.1f} GiB) per GPU, "
            f"{free / GIB:.2f} GiB cannot hold one sequence's Mamba state ({state_seq_gpu / GIB:.3f} GiB) and a "
            f"{variant.max_model_len}-token KV cache on {gpu_label}: use more GPUs or lower max_model_len"
        )
    state_bytes_gpu = slots * state_seq_gpu
    kv_free = free - state_bytes_gpu
    if arch.attention_layers == 0:
        # Pure state-space models: context never limits concurrency; give every slot a full context.
        blocks = slots * math.ceil(variant.max_model_len / variant.block_size)
        kv_bytes = 0.0
    else:
        blocks = math.floor(kv_free / block_bytes_gpu)
        kv_bytes = kv_free * gpus
    tokens = blocks * variant.block_size
    if arch.attention_layers and tokens < variant.max_model_len:
        return no_fit(
            f"the KV cache holds {tokens} tokens ({kv_free / GIB:.2f} GiB per GPU after "
            f"{weights / GIB:.1f} GiB weights and {reserved / GIB:.1f} GiB reserve), fewer than max_model_len "
            f"{variant.max_model_len} on {gpu_label}: lower max_model_len, use an FP8 KV cache, more GPUs or "
            "a smaller format"
        )
    # What is left per GPU once one max_model_len context (and the Mamba slots) is held.
    margin = 0.0 if arch.attention_layers == 0 else kv_free - context_bytes_gpu
    reason = (
        f"fits on {gpu_label}: {weights / GIB:.1f} GiB weights + {reserved / GIB:.1f} GiB reserve per GPU, "
        f"KV cache {tokens} tokens"
    )
    if state_seq_gpu > 0:
        reason += f", Mamba state for {slots} sequences"
    concurrent = min(blocks // max(1, math.ceil(variant.max_model_len / variant.block_size)), slots)
    reason += f" ({min(concurrent, variant.max_num_seqs)} at max_model_len {variant.max_model_len})"
    if arch.attention_layers:
        reason += f", {margin / GIB:.2f} GiB per GPU to spare beyond one full context"
    return MemoryPlan(
        fits=True,
        reason=reason,
        margin_bytes_per_gpu=margin,
        mamba_state_bytes=state_bytes_gpu * gpus,
        kv_cache_bytes=kv_bytes,
        num_kv_blocks=blocks,
        mamba_state_slots=slots,
        **common,
    )


def min_tensor_parallel(
    variant: Variant, max_tensor_parallel: int = 8, reserve: ReserveModel = DEFAULT_RESERVE
) -> int | None:
    """The smallest tensor-parallel size (a power of two dividing the heads) at which `variant` fits.

    `variant.tensor_parallel` is ignored; None when nothing up to `max_tensor_parallel` fits.
    """
    for tp in valid_tensor_parallel_sizes(variant.architecture, max_tensor_parallel):
        candidate = variant.model_copy(update={"tensor_parallel": tp})
        if plan_memory(candidate, reserve).fits:
            return tp
    return None
