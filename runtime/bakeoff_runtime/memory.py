"""Memory fit of a variant: does it load, how much KV cache and Mamba state is left, how many
sequences run at once.

The accounting follows what vLLM does at start-up, per GPU (tensor-parallel rank):

    budget = gpu_memory_utilization × device memory
    free   = budget − weights − reserve
    free  → Mamba state slots (hybrids) → KV cache blocks of `block_size` tokens

* Weights: decoder-block parameters × the format's bytes per weight (group scales included); the
  embeddings and the LM head stay 16-bit. Everything is sharded evenly across tensor-parallel ranks
  (vLLM's column/row-parallel linears and vocab-parallel embedding).
* Reserve: what vLLM's profiling run finds besides weights, in four documented parts
  (`ReserveModel`): non-torch memory (CUDA context, cuBLAS workspaces), the activation peak of one
  step of `max_num_batched_tokens` tokens, the sampler's fp32 logits for `max_num_seqs` sequences,
  CUDA-graph pools, and NCCL buffers when tensor parallel.
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
    """Per-GPU memory vLLM holds besides weights, KV cache and Mamba state (see docs/performance-model.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    non_torch_gib: float = Field(
        default=0.75, ge=0, le=16, description="CUDA context, cuBLAS/cuDNN workspaces, allocator slack."
    )
    cuda_graph_gib: float = Field(default=0.5, ge=0, le=16, description="CUDA-graph memory pools of the decode graphs.")
    nccl_gib: float = Field(
        default=0.5, ge=0, le=16, description="NCCL and custom all-reduce buffers, only when tensor parallel."
    )
    activation_live_copies: float = Field(
        default=4.0,
        ge=1,
        le=32,
        description="Hidden-sized activations alive at the peak (residual, normed input, attention output, "
        "QKV), on top of the gated MLP's 3 × intermediate.",
    )
    logits_copies: float = Field(default=2.0, ge=1, le=8, description="fp32 logits and probabilities.")


DEFAULT_RESERVE = ReserveModel()


class MemoryPlan(BaseModel):
    """Where each GPU's memory goes for one variant, and what that allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fits: bool = Field(description="True when the variant loads and holds at least one max_model_len context.")
    reason: str = Field(description="Why it fits or not, with the figures.")
    tensor_parallel: int = Field(ge=1, description="GPUs per replica.")
    budget_bytes_per_gpu: float = Field(ge=0, description="gpu_memory_utilization × device memory.")
    weight_bytes_per_gpu: float = Field(ge=0, description="Weights on each rank.")
    reserve_bytes_per_gpu: float = Field(ge=0, description="Activations, graphs, workspaces, NCCL on each rank.")
    kv_bytes_per_token: float = Field(ge=0, description="Whole model (all attention layers), this KV dtype.")
    kv_bytes_per_token_per_gpu: float = Field(ge=0, description="One rank's share (KV heads split or replicated).")
    mamba_state_bytes_per_sequence: float = Field(ge=0, description="Whole model, 0 for dense.")
    mamba_state_bytes_per_sequence_per_gpu: float = Field(ge=0, description="One rank's share.")
    mamba_state_bytes: float = Field(ge=0, description="Mamba state set aside, per replica (all ranks).")
    kv_cache_bytes: float = Field(ge=0, description="KV cache per replica (all TP ranks together).")
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
            "weights_gib_per_gpu": round(self.weight_bytes_per_gpu / GIB, 2),
            "reserve_gib_per_gpu": round(self.reserve_bytes_per_gpu / GIB, 2),
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


def kv_heads_per_gpu(variant: Variant) -> int:
    heads = variant.architecture.num_kv_heads
    return max(1, math.ceil(heads / variant.tensor_parallel))


def kv_bytes_per_token_per_gpu(variant: Variant) -> float:
    arch = variant.architecture
    per_head = 2 * arch.attention_layers * arch.head_dim * KV_CACHE_BYTES[variant.kv_cache_dtype]
    return per_head * kv_heads_per_gpu(variant)


def mamba_state_bytes_per_sequence(variant: Variant) -> float:
    ssm_bytes = MAMBA_SSM_BYTES[variant.resolved_mamba_ssm_cache_dtype]
    return variant.architecture.mamba_state_bytes_per_sequence(ssm_bytes, MAMBA_CONV_BYTES)


def reserve_bytes_per_gpu(variant: Variant, reserve: ReserveModel = DEFAULT_RESERVE) -> float:
    arch = variant.architecture
    tp = variant.tensor_parallel
    tokens = variant.max_num_batched_tokens
    hidden_live = reserve.activation_live_copies * arch.hidden_size
    mlp_live = 3 * arch.intermediate_size / tp  # gate and up projections, then the activated product
    mamba_live = 4 * arch.mamba_d_inner / tp if arch.mamba_layers else 0.0
    activations = tokens * (hidden_live + max(mlp_live, mamba_live)) * ACTIVATION_BYTES
    logits = variant.max_num_seqs * arch.vocab_size / tp * LOGITS_BYTES * reserve.logits_copies
    fixed = reserve.non_torch_gib + reserve.cuda_graph_gib + (reserve.nccl_gib if tp > 1 else 0.0)
    return fixed * GIB + activations + logits


def plan_memory(variant: Variant, reserve: ReserveModel = DEFAULT_RESERVE) -> MemoryPlan:
    """Where each GPU's memory goes, and whether the variant fits (with the reason)."""
    tp = variant.tensor_parallel
    arch = variant.architecture
    budget = variant.gpu.memory_bytes * variant.gpu_memory_utilization
    weights = weight_bytes(variant) / tp
    reserved = reserve_bytes_per_gpu(variant, reserve)
    kv_token_gpu = kv_bytes_per_token_per_gpu(variant)
    kv_token = arch.kv_bytes_per_token(KV_CACHE_BYTES[variant.kv_cache_dtype])
    state_seq = mamba_state_bytes_per_sequence(variant)
    state_seq_gpu = state_seq / tp
    free = budget - weights - reserved
    block_bytes_gpu = kv_token_gpu * variant.block_size
    # One full-length context must fit beside the Mamba slots, or vLLM refuses to start.
    context_bytes_gpu = math.ceil(variant.max_model_len / variant.block_size) * block_bytes_gpu

    common: dict[str, Any] = {
        "tensor_parallel": tp,
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
            mamba_state_bytes=0.0,
            kv_cache_bytes=0.0,
            num_kv_blocks=0,
            mamba_state_slots=0,
            **common,
        )

    gpu_label = f"{tp}× {variant.gpu.name}"
    execution = variant.execution
    if not execution.runs:
        return no_fit(execution.reason)
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
        kv_bytes = kv_free * tp
    tokens = blocks * variant.block_size
    if arch.attention_layers and tokens < variant.max_model_len:
        return no_fit(
            f"the KV cache holds {tokens} tokens ({kv_free / GIB:.2f} GiB per GPU after "
            f"{weights / GIB:.1f} GiB weights and {reserved / GIB:.1f} GiB reserve), fewer than max_model_len "
            f"{variant.max_model_len} on {gpu_label}: lower max_model_len, use an FP8 KV cache, more GPUs or "
            "a smaller format"
        )
    reason = (
        f"fits on {gpu_label}: {weights / GIB:.1f} GiB weights + {reserved / GIB:.1f} GiB reserve per GPU, "
        f"KV cache {tokens} tokens"
    )
    if state_seq_gpu > 0:
        reason += f", Mamba state for {slots} sequences"
    concurrent = min(blocks // max(1, math.ceil(variant.max_model_len / variant.block_size)), slots)
    reason += f" ({min(concurrent, variant.max_num_seqs)} at max_model_len {variant.max_model_len})"
    return MemoryPlan(
        fits=True,
        reason=reason,
        mamba_state_bytes=state_bytes_gpu * tp,
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
